//! The Redis Streams bus: XADD with approximate MAXLEN trimming, consumer groups
//! read with XREADGROUP, XACK, XAUTOCLAIM for stale entries, XINFO GROUPS for
//! pending counts and lag.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use crate::backpressure::Admission;
use crate::{
    BackPressure, BusError, ConsumerInfo, ConsumerName, Delivery, EntryId, Envelope, EventBus,
    GroupInfo, GroupName, StartFrom, StreamName, check_block, check_max,
};

/// Idle blocking-read connections kept for reuse; more are opened on demand.
const IDLE_READERS: usize = 16;

/// Settings of a [`RedisBus`].
#[derive(Clone)]
pub struct RedisBusConfig {
    /// `redis://host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// The CA certificate (PEM) that signed the server's certificate of a
    /// `rediss://` URL; `None`: the platform's roots.
    pub tls_ca: Option<Vec<u8>>,
    /// Put before every key (`grodt.fills.v1` becomes `<prefix>grodt.fills.v1`),
    /// so environments and tests can share one Redis. May be empty.
    pub key_prefix: String,
    /// Approximate cap on entries per stream (`XADD MAXLEN ~`). Redis keeps at
    /// least this many; it must be at least twice `back_pressure.max_backlog`
    /// so that trimming never reaches an entry a group still owes.
    pub max_len: u64,
    /// The publish back-pressure rule.
    pub back_pressure: BackPressure,
    /// Longest wait for the answer to a non-blocking command.
    pub response_timeout: Duration,
}

impl std::fmt::Debug for RedisBusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password (`redis://user:secret@host`).
        let url = if self.url.contains('@') {
            "<redacted: contains credentials>"
        } else {
            self.url.as_str()
        };
        f.debug_struct("RedisBusConfig")
            .field("url", &url)
            .field("tls_ca", &self.tls_ca.as_ref().map(|_| "<pem>"))
            .field("key_prefix", &self.key_prefix)
            .field("max_len", &self.max_len)
            .field("back_pressure", &self.back_pressure)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisBusConfig {
    /// Defaults for everything but the URL and prefix.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls_ca: None,
            key_prefix: key_prefix.into(),
            max_len: 1_000_000,
            back_pressure: BackPressure::default(),
            response_timeout: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> Result<(), BusError> {
        if !self
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(BusError::InvalidArgument {
                field: "key_prefix",
                reason: "only ASCII letters, digits and . - _ : are allowed".to_owned(),
            });
        }
        if self.tls_ca.is_some() && !self.url.starts_with("rediss://") {
            return Err(BusError::InvalidArgument {
                field: "tls_ca",
                reason: "a CA certificate needs a rediss:// URL".to_owned(),
            });
        }
        if self.response_timeout.is_zero() {
            return Err(BusError::InvalidArgument {
                field: "response_timeout",
                reason: "must be positive".to_owned(),
            });
        }
        self.back_pressure.validate()?;
        self.back_pressure.check_max_len(self.max_len)
    }
}

/// The Lua function both publish scripts check back-pressure with:
/// `worst(key)` is the name and backlog (pending + lag) of the stream's
/// group furthest behind, `nil, -1` when the stream or its groups do not
/// exist. A group's lag is nil when Redis cannot compute it; the stream
/// length is then used, an upper bound.
macro_rules! worst_group_lua {
    () => {
        r"
local function worst(key)
  local worst_name, worst_backlog = nil, -1
  if redis.call('EXISTS', key) == 0 then return worst_name, worst_backlog end
  local len = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, pending, lag
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1]
      elseif g[i] == 'pending' then pending = g[i + 1]
      elseif g[i] == 'lag' then lag = g[i + 1] end
    end
    if not lag then
      if not len then len = redis.call('XLEN', key) end
      lag = len
    end
    if pending + lag > worst_backlog then worst_name, worst_backlog = name, pending + lag end
  end
  return worst_name, worst_backlog
end
"
    };
}

/// Publish with back-pressure as one atomic step. KEYS[1] the stream;
/// ARGV[1] max_backlog, ARGV[2] max_len, then field/value pairs. Returns
/// `{1, id}` when appended, `{0, group, backlog}` when a group is full.
const PUBLISH_SCRIPT: &str = concat!(
    worst_group_lua!(),
    r"
local name, backlog = worst(KEYS[1])
if backlog >= tonumber(ARGV[1]) then return {0, name, backlog} end
return {1, redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))}
"
);

/// [`EventBus::publish_batch`] as one script: the check of
/// [`PUBLISH_SCRIPT`] for every stream of the batch (a stream that gets `n`
/// events is refused unless its worst group's backlog plus `n` stays within
/// the limit), then every append, in order; or nothing. KEYS: one stream
/// per event (repeats allowed). ARGV: max backlog, max length, then per
/// event its field count and its fields. Reply: `{1, {id, ...}}`, or
/// `{0, k, group, backlog}` with `k` the first event (1-based) on the
/// stream that is full.
const PUBLISH_BATCH_SCRIPT: &str = concat!(
    worst_group_lua!(),
    r"
local max_backlog = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local first, n = true, 0
  for j, other in ipairs(KEYS) do
    if other == key then
      if j < i then first = false end
      n = n + 1
    end
  end
  if first then
    local name, backlog = worst(key)
    if backlog >= 0 and backlog + n > max_backlog then return {0, i, name, backlog} end
  end
end
local ids, at = {}, 3
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  ids[i] = redis.call('XADD', key, 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
return {1, ids}
"
);

/// An [`EventBus`] on Redis Streams (Redis 7 or later).
///
/// Short commands share one auto-reconnecting [`ConnectionManager`]. A blocking
/// XREADGROUP would stall every command queued behind it on a multiplexed
/// connection, so blocking reads each borrow a dedicated connection from a
/// small pool; a read that fails or is cancelled drops its connection.
pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
    readers: Mutex<Vec<MultiplexedConnection>>,
    /// Digest of [`PUBLISH_SCRIPT`], as Redis computed it when loading it.
    publish_sha: String,
    /// Digest of [`PUBLISH_BATCH_SCRIPT`].
    batch_sha: String,
    config: RedisBusConfig,
    /// When this process last stamped each (presence key, consumer).
    stamped: Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
}

/// A consumer's presence is stamped at most this often.
const STAMP_EVERY: Duration = Duration::from_secs(1);
/// Presence stamps older than this are dropped when read.
const PRESENCE_KEPT: Duration = Duration::from_secs(86_400);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("key_prefix", &self.config.key_prefix)
            .field("max_len", &self.config.max_len)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Validates the config and connects; fails with `Unavailable` if Redis
    /// cannot be reached.
    pub async fn connect(config: RedisBusConfig) -> Result<Self, BusError> {
        config.validate()?;
        let invalid = |e: redis::RedisError| BusError::InvalidArgument {
            field: "url",
            reason: e.to_string(),
        };
        let client = match &config.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )
            .map_err(|e| BusError::InvalidArgument {
                field: "tls_ca",
                reason: e.to_string(),
            })?,
            None => redis::Client::open(config.url.as_str()).map_err(invalid)?,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.response_timeout))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| BusError::from_redis("connect", e))?;
        let publish_sha = load_script(&mut conn.clone(), PUBLISH_SCRIPT).await?;
        let batch_sha = load_script(&mut conn.clone(), PUBLISH_BATCH_SCRIPT).await?;
        Ok(Self {
            client,
            conn,
            readers: Mutex::new(Vec::new()),
            publish_sha,
            batch_sha,
            config,
            stamped: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The sorted set of a group's consumers by when they last read (ms):
    /// XINFO CONSUMERS' `idle` is not refreshed by empty reads before Redis
    /// 7.2, so an idle but live consumer would look dead there.
    fn presence_key(&self, stream: &StreamName, group: &GroupName) -> String {
        format!("{}{stream}.presence.{group}", self.config.key_prefix)
    }

    /// Stamps `consumer` as having read just now (at most every
    /// [`STAMP_EVERY`] per consumer and group from this process).
    async fn stamp(&self, stream: &StreamName, group: &GroupName, consumer: &ConsumerName) {
        let key = self.presence_key(stream, group);
        let due = {
            let mut stamped = self
                .stamped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (key.clone(), consumer.to_string());
            match stamped.get(&slot) {
                Some(t) if t.elapsed() < STAMP_EVERY => false,
                _ => {
                    stamped.insert(slot, std::time::Instant::now());
                    true
                }
            }
        };
        if due {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&key).arg(now_ms()).arg(consumer.as_str());
            // Presence is advisory (it sizes batches): a failed stamp must not
            // fail the read that delivered entries.
            if let Err(e) = self.query("presence", &cmd).await {
                tracing::debug!(error = %e, "presence stamp failed");
            }
        }
    }

    /// The Redis key of a stream.
    pub fn key(&self, stream: &StreamName) -> String {
        format!("{}{}", self.config.key_prefix, stream)
    }

    /// Deletes every key under this bus's prefix (tests and teardown). Refuses
    /// an empty prefix, which would mean the whole database.
    pub async fn delete_all_keys(&self) -> Result<u64, BusError> {
        if self.config.key_prefix.is_empty() {
            return Err(BusError::InvalidArgument {
                field: "key_prefix",
                reason: "refusing to delete every key of the database".to_owned(),
            });
        }
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", self.config.key_prefix);
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| BusError::from_redis("delete_all_keys", e))?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| BusError::from_redis("delete_all_keys", e))?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn query(&self, op: &'static str, cmd: &redis::Cmd) -> Result<Value, BusError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| BusError::from_redis(op, e))
    }

    /// A connection for a blocking read, and whether it came from the pool.
    async fn reader(&self) -> Result<(MultiplexedConnection, bool), BusError> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.fresh_reader().await?, false)),
        }
    }

    async fn fresh_reader(&self) -> Result<MultiplexedConnection, BusError> {
        // No response timeout on the connection itself: the caller bounds the
        // whole read by the block time plus the response timeout.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.config.response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| BusError::from_redis("consume", e))
    }

    /// Runs a blocking XREADGROUP on a connection of its own. A pooled
    /// connection may have died while idle (Redis restarted): then the read is
    /// retried once on a fresh one. Should the failed attempt have reached
    /// Redis after all, its entries are pending for this consumer and come
    /// back through `claim_stale`, so nothing is lost.
    async fn blocking_read(&self, cmd: &redis::Cmd, block: Duration) -> Result<Value, BusError> {
        let allowed = block + self.config.response_timeout;
        let (mut conn, pooled) = self.reader().await?;
        let mut result = tokio::time::timeout(allowed, cmd.query_async::<Value>(&mut conn)).await;
        if pooled && matches!(&result, Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped()) {
            conn = self.fresh_reader().await?;
            result = tokio::time::timeout(allowed, cmd.query_async::<Value>(&mut conn)).await;
        }
        match result {
            Ok(Ok(reply)) => {
                self.return_reader(conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(BusError::from_redis("consume", e)),
            Err(_) => Err(BusError::Timeout {
                op: "consume",
                after: allowed,
            }),
        }
    }

    fn return_reader(&self, conn: MultiplexedConnection) {
        let mut idle = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Decodes entries. One that does not decode is copied, raw and with the
    /// error, to the stream's dead-letter stream ([`StreamName::dead_letter`])
    /// and acked, so one foreign entry cannot wedge a group.
    async fn decode(
        &self,
        stream: &StreamName,
        group: &GroupName,
        entries: Vec<RawEntry>,
        mut count_of: impl FnMut(EntryId) -> u64,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut out = Vec::with_capacity(entries.len());
        for (entry_id, fields) in entries {
            match Envelope::from_fields(fields.clone()) {
                Ok(envelope) => out.push(Delivery {
                    entry_id,
                    envelope,
                    delivery_count: count_of(entry_id),
                }),
                Err(error) => {
                    tracing::error!(stream = %stream, group = %group, entry_id = %entry_id,
                        error = %error, "undecodable entry moved to the dead-letter stream");
                    let mut add = redis::cmd("XADD");
                    add.arg(self.key(&stream.dead_letter()))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.config.max_len)
                        .arg("*")
                        .arg("source_entry_id")
                        .arg(entry_id.to_string())
                        .arg("group")
                        .arg(group.as_str())
                        .arg("error")
                        .arg(error.to_string());
                    for (k, v) in &fields {
                        add.arg(k.as_slice()).arg(v.as_slice());
                    }
                    self.query("dead_letter", &add).await?;
                    self.ack(stream, group, &[entry_id]).await?;
                }
            }
        }
        Ok(out)
    }

    /// One atomic check-and-append; loads the script when Redis lacks it
    /// (first use, or after a restart).
    async fn try_publish(&self, cmd: &redis::Cmd) -> Result<Admission<EntryId>, BusError> {
        let reply = self.script(cmd, PUBLISH_SCRIPT, &self.publish_sha).await?;
        let Value::Array(parts) = reply else {
            return Err(protocol("publish", "script reply is not an array"));
        };
        match parts.as_slice() {
            [Value::Int(1), id] => entry_id(id)
                .map(Admission::Admitted)
                .ok_or_else(|| protocol("publish", "XADD did not return an entry id")),
            [Value::Int(0), group, backlog] => Ok(Admission::Full {
                stream: None,
                group: text(group),
                backlog: int(backlog).unwrap_or(0),
            }),
            _ => Err(protocol("publish", "script reply is malformed")),
        }
    }

    /// Runs a publish script; loads it when Redis lacks it (first use, or
    /// after a restart).
    async fn script(
        &self,
        cmd: &redis::Cmd,
        script: &'static str,
        sha: &str,
    ) -> Result<Value, BusError> {
        let mut conn = self.conn.clone();
        match cmd.query_async::<Value>(&mut conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                if load_script(&mut conn, script).await? != sha {
                    return Err(protocol("publish", "SCRIPT LOAD returned another digest"));
                }
                cmd.query_async::<Value>(&mut conn).await
            }
            other => other,
        }
        .map_err(|e| BusError::from_redis("publish", e))
    }

    /// One atomic check-and-append of a whole batch ([`PUBLISH_BATCH_SCRIPT`]).
    async fn try_publish_batch(
        &self,
        cmd: &redis::Cmd,
        items: &[(StreamName, Envelope)],
    ) -> Result<Admission<Vec<EntryId>>, BusError> {
        let reply = self
            .script(cmd, PUBLISH_BATCH_SCRIPT, &self.batch_sha)
            .await?;
        let Value::Array(parts) = reply else {
            return Err(protocol("publish", "batch script reply is not an array"));
        };
        match parts.as_slice() {
            [Value::Int(1), Value::Array(ids)] if ids.len() == items.len() => ids
                .iter()
                .map(|id| {
                    entry_id(id)
                        .ok_or_else(|| protocol("publish", "XADD did not return an entry id"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Admission::Admitted),
            [Value::Int(0), Value::Int(k), group, backlog] => Ok(Admission::Full {
                stream: usize::try_from(*k)
                    .ok()
                    .and_then(|k| items.get(k.checked_sub(1)?))
                    .map(|(s, _)| s.clone()),
                group: text(group),
                backlog: int(backlog).unwrap_or(0),
            }),
            _ => Err(protocol("publish", "batch script reply is malformed")),
        }
    }

    async fn delivery_counts(
        &self,
        stream: &StreamName,
        group: &GroupName,
        ids: &[EntryId],
    ) -> Result<Vec<(EntryId, u64)>, BusError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key(stream);
        let mut pipe = redis::pipe();
        for id in ids {
            let id = id.to_string();
            pipe.cmd("XPENDING")
                .arg(&key)
                .arg(group.as_str())
                .arg(&id)
                .arg(&id)
                .arg(1);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| BusError::from_redis("claim_stale", e))?;
        let mut counts = Vec::with_capacity(ids.len());
        for reply in replies {
            // [[id, consumer, idle ms, delivery count]]; empty if acked meanwhile.
            let Value::Array(rows) = reply else {
                return Err(protocol("claim_stale", "XPENDING reply is not an array"));
            };
            for row in rows {
                let Value::Array(row) = row else {
                    return Err(protocol("claim_stale", "XPENDING row is not an array"));
                };
                let id = row.first().and_then(entry_id);
                let count = row.get(3).and_then(int);
                match (id, count) {
                    (Some(id), Some(count)) => counts.push((id, count)),
                    _ => return Err(protocol("claim_stale", "XPENDING row is malformed")),
                }
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, stream: &StreamName, envelope: &Envelope) -> Result<EntryId, BusError> {
        envelope.validate()?;
        let key = self.key(stream);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.publish_sha.as_str())
            .arg(1)
            .arg(&key)
            .arg(self.config.back_pressure.max_backlog)
            .arg(self.config.max_len);
        for (field, value) in envelope.to_fields() {
            cmd.arg(field).arg(value);
        }
        self.config
            .back_pressure
            .admit(stream, || self.try_publish(&cmd))
            .await
    }

    async fn publish_batch(
        &self,
        items: &[(StreamName, Envelope)],
    ) -> Result<Vec<EntryId>, BusError> {
        let first = match items {
            [] => return Ok(Vec::new()),
            // One event: the single script, which has less to do.
            [(stream, envelope)] => return Ok(vec![self.publish(stream, envelope).await?]),
            [(first, _), ..] => first,
        };
        crate::check_batch(items, &self.config.back_pressure)?;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.batch_sha.as_str()).arg(items.len());
        for (stream, _) in items {
            cmd.arg(self.key(stream));
        }
        cmd.arg(self.config.back_pressure.max_backlog)
            .arg(self.config.max_len);
        for (_, envelope) in items {
            let fields = envelope.to_fields();
            cmd.arg(fields.len() * 2);
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
        }
        self.config
            .back_pressure
            .admit(first, || self.try_publish_batch(&cmd, items))
            .await
    }

    async fn ensure_group(
        &self,
        stream: &StreamName,
        group: &GroupName,
        start: StartFrom,
    ) -> Result<(), BusError> {
        let start = match start {
            StartFrom::Beginning => "0",
            StartFrom::New => "$",
        };
        let mut conn = self.conn.clone();
        let result: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key(stream))
            .arg(group.as_str())
            .arg(start)
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(BusError::from_redis("ensure_group", e)),
        }
    }

    async fn consume(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        check_max(max)?;
        check_block(block)?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group.as_str())
            .arg(consumer.as_str())
            .arg("COUNT")
            .arg(max);
        if !block.is_zero() {
            // At least 1 ms: BLOCK 0 would mean forever.
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(self.key(stream)).arg(">");
        let reply = if block.is_zero() {
            self.query("consume", &cmd).await
        } else {
            self.blocking_read(&cmd, block).await
        };
        let reply = reply.map_err(|e| no_group(e, stream, group))?;
        self.stamp(stream, group, consumer).await;
        let entries = read_reply(reply)?;
        self.decode(stream, group, entries, |_| 1).await
    }

    async fn ack(
        &self,
        stream: &StreamName,
        group: &GroupName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(self.key(stream)).arg(group.as_str());
        for id in ids {
            cmd.arg(id.to_string());
        }
        let reply = self.query("ack", &cmd).await?;
        int(&reply).ok_or_else(|| protocol("ack", "XACK did not return a count"))
    }

    async fn renew(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(self.key(stream))
            .arg(group.as_str())
            .arg(consumer.as_str())
            .arg(0);
        for id in ids {
            cmd.arg(id.to_string());
        }
        // JUSTID: no payload back and no delivery counted; the entry stays
        // this consumer's, its idle time back at zero.
        cmd.arg("JUSTID");
        let reply = self
            .query("renew", &cmd)
            .await
            .map_err(|e| no_group(e, stream, group))?;
        let Value::Array(renewed) = reply else {
            return Err(protocol("renew", "XCLAIM reply is not an array"));
        };
        Ok(renewed.len() as u64)
    }

    async fn claim_stale(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        check_max(max)?;
        let key = self.key(stream);
        let mut cursor = "0-0".to_owned();
        let mut claimed = Vec::new();
        let mut lost = 0usize;
        // XAUTOCLAIM scans the pending list in slices; follow the cursor until
        // it wraps to 0-0 or enough entries are claimed.
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&key)
                .arg(group.as_str())
                .arg(consumer.as_str())
                .arg(min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - claimed.len());
            let reply = self
                .query("claim_stale", &cmd)
                .await
                .map_err(|e| no_group(e, stream, group))?;
            let Value::Array(mut parts) = reply else {
                return Err(protocol("claim_stale", "XAUTOCLAIM reply is not an array"));
            };
            if parts.len() < 2 {
                return Err(protocol("claim_stale", "XAUTOCLAIM reply is too short"));
            }
            if let Some(Value::Array(deleted)) = parts.get(2) {
                lost += deleted.len();
            }
            let entries = entries(parts.swap_remove(1), "claim_stale")?;
            let next = bytes(&parts[0])
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| protocol("claim_stale", "XAUTOCLAIM cursor missing"))?;
            claimed.extend(entries);
            if next == "0-0" || claimed.len() >= max {
                break;
            }
            cursor = next;
        }
        if lost > 0 {
            tracing::warn!(stream = %stream, group = %group, lost,
                "pending entries were trimmed before being acked");
        }
        let ids: Vec<EntryId> = claimed.iter().map(|(id, _)| *id).collect();
        let counts = self.delivery_counts(stream, group, &ids).await?;
        self.decode(stream, group, claimed, |id| {
            counts.iter().find(|(i, _)| *i == id).map_or(1, |(_, c)| *c)
        })
        .await
    }

    async fn consumers(
        &self,
        stream: &StreamName,
        group: &GroupName,
    ) -> Result<Vec<ConsumerInfo>, BusError> {
        let key = self.presence_key(stream, group);
        let now = now_ms();
        let stale = now.saturating_sub(u64::try_from(PRESENCE_KEPT.as_millis()).unwrap_or(0));
        let mut trim = redis::cmd("ZREMRANGEBYSCORE");
        trim.arg(&key).arg("-inf").arg(format!("({stale}"));
        self.query("consumers", &trim).await?;
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
        let reply = self.query("consumers", &cmd).await?;
        let items = match reply {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return Err(protocol("consumers", "ZRANGE reply is not an array")),
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let [member, score] = pair else {
                return Err(protocol("consumers", "ZRANGE WITHSCORES reply is odd"));
            };
            let name = bytes(member)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| protocol("consumers", "member is not a string"))?;
            let at = match score {
                Value::Double(x) => Some(*x),
                other => bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
            }
            .ok_or_else(|| protocol("consumers", "score is not a number"))?;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "millisecond stamps this process wrote"
            )]
            let at = at.max(0.0) as u64;
            out.push(ConsumerInfo {
                name,
                idle: Duration::from_millis(now.saturating_sub(at)),
            });
        }
        Ok(out)
    }

    async fn groups(&self, stream: &StreamName) -> Result<Vec<GroupInfo>, BusError> {
        let key = self.key(stream);
        let mut conn = self.conn.clone();
        let reply: Value = match redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut conn)
            .await
        {
            Ok(v) => v,
            Err(e) if e.detail().is_some_and(|d| d.contains("no such key")) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(BusError::from_redis("groups", e)),
        };
        let Value::Array(groups) = reply else {
            return Err(protocol("groups", "XINFO GROUPS reply is not an array"));
        };
        let mut stream_len = None;
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let fields = pairs(g).ok_or_else(|| protocol("groups", "group is not a map"))?;
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| bytes(k) == Some(name.as_bytes()))
                    .map(|(_, v)| v)
            };
            let name = get("name")
                .and_then(bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| protocol("groups", "group without name"))?;
            let consumers = get("consumers").and_then(int).unwrap_or(0);
            let pending = get("pending").and_then(int).unwrap_or(0);
            let last_delivered = get("last-delivered-id")
                .and_then(entry_id)
                .ok_or_else(|| protocol("groups", "group without last-delivered-id"))?;
            // Redis leaves lag unset when it cannot compute it exactly; the
            // stream length is then an upper bound, the safe side for
            // back-pressure.
            let lag = match get("lag").and_then(int) {
                Some(lag) => lag,
                None => match stream_len {
                    Some(len) => len,
                    None => {
                        let len: u64 = redis::cmd("XLEN")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| BusError::from_redis("groups", e))?;
                        stream_len = Some(len);
                        len
                    }
                },
            };
            out.push(GroupInfo {
                group: name,
                consumers,
                pending,
                lag,
                last_delivered,
            });
        }
        Ok(out)
    }
}

async fn load_script(conn: &mut ConnectionManager, script: &str) -> Result<String, BusError> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script)
        .query_async(conn)
        .await
        .map_err(|e| BusError::from_redis("load publish script", e))
}

fn protocol(op: &'static str, detail: &str) -> BusError {
    BusError::Protocol {
        op,
        detail: detail.to_owned(),
    }
}

/// Redis answers NOGROUP for a group (or stream) that does not exist.
fn no_group(e: BusError, stream: &StreamName, group: &GroupName) -> BusError {
    match e {
        BusError::Redis { source, .. } if source.code() == Some("NOGROUP") => BusError::NoGroup {
            stream: stream.to_string(),
            group: group.to_string(),
        },
        other => other,
    }
}

/// A reply's bulk string as text (empty when it is none).
fn text(v: &Value) -> String {
    bytes(v)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

fn entry_id(v: &Value) -> Option<EntryId> {
    std::str::from_utf8(bytes(v)?).ok()?.parse().ok()
}

/// Key/value pairs from a RESP3 map or a RESP2 flat array.
fn pairs(v: Value) -> Option<Vec<(Value, Value)>> {
    match v {
        Value::Map(m) => Some(m),
        Value::Array(a) if a.len() % 2 == 0 => {
            let mut it = a.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Some(out)
        }
        _ => None,
    }
}

type RawEntry = (EntryId, Vec<(Vec<u8>, Vec<u8>)>);

/// `[[id, [field, value, ...]], ...]`; entries whose data is gone (nil fields)
/// are skipped.
fn entries(v: Value, op: &'static str) -> Result<Vec<RawEntry>, BusError> {
    let Value::Array(items) = v else {
        return Err(protocol(op, "entries are not an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            return Err(protocol(op, "entry is not an array"));
        };
        if parts.len() != 2 {
            return Err(protocol(op, "entry is not [id, fields]"));
        }
        let id = entry_id(&parts[0]).ok_or_else(|| protocol(op, "entry id is malformed"))?;
        let Some(fields) = pairs(parts.swap_remove(1)) else {
            continue;
        };
        let mut decoded = Vec::with_capacity(fields.len());
        for (k, v) in fields {
            match (bytes(&k), bytes(&v)) {
                (Some(k), Some(v)) => decoded.push((k.to_vec(), v.to_vec())),
                _ => return Err(protocol(op, "entry field is not a string")),
            }
        }
        out.push((id, decoded));
    }
    Ok(out)
}

/// XREADGROUP: nil on timeout, else one `[key, entries]` per stream (a map in RESP3).
fn read_reply(v: Value) -> Result<Vec<RawEntry>, BusError> {
    let streams = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m,
        Value::Array(a) => a
            .into_iter()
            .map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    let key = kv.pop().unwrap_or(Value::Nil);
                    Ok((key, entries))
                }
                _ => Err(protocol("consume", "stream reply is not [key, entries]")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(protocol("consume", "XREADGROUP reply is not an array")),
    };
    let mut out = Vec::new();
    for (_, e) in streams {
        out.extend(entries(e, "consume")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("GRODT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    #[test]
    fn debug_output_hides_credentials() {
        let shown = format!(
            "{:?}",
            RedisBusConfig::new("redis://u:hunter2@h:6379", "p:")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = format!("{:?}", RedisBusConfig::new("redis://h:6379", "p:"));
        assert!(shown.contains("redis://h:6379"), "{shown}");
    }

    #[tokio::test]
    async fn a_ca_certificate_needs_a_rediss_url_and_is_not_printed() {
        let mut config = RedisBusConfig::new("redis://127.0.0.1:6379", "p:");
        config.tls_ca = Some(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(format!("{config:?}").contains("tls_ca: Some(\"<pem>\")"));
        match RedisBus::connect(config).await {
            Err(BusError::InvalidArgument { field, .. }) => assert_eq!(field, "tls_ca"),
            other => panic!("want InvalidArgument on tls_ca, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_blocking_read_survives_a_pooled_connection_killed_while_idle() {
        let prefix = format!("grodt-test:unit:{}:", uuid::Uuid::now_v7().simple());
        let bus = RedisBus::connect(RedisBusConfig::new(url(), prefix))
            .await
            .expect("Redis (GRODT_TEST_REDIS_URL) is unreachable; this test needs it");
        let s = StreamName::parse("grodt.fills.v1").unwrap();
        let g = GroupName::parse("g").unwrap();
        let c = ConsumerName::parse("c").unwrap();
        bus.ensure_group(&s, &g, StartFrom::Beginning)
            .await
            .unwrap();
        let block = Duration::from_millis(20);
        assert!(bus.consume(&s, &g, &c, 1, block).await.unwrap().is_empty());
        // Kill the pooled reader from the server side, as a Redis restart would.
        let mut pooled = bus
            .readers
            .lock()
            .unwrap()
            .pop()
            .expect("reader returned to the pool");
        let id: u64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut pooled)
            .await
            .unwrap();
        bus.readers.lock().unwrap().push(pooled);
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut bus.conn.clone())
            .await
            .unwrap();
        assert_eq!(killed, 1);
        let e = Envelope::new("grodt.v1.Test", chrono::Utc::now(), &b"x"[..]);
        let entry = bus.publish(&s, &e).await.unwrap();
        let got = bus.consume(&s, &g, &c, 1, block).await;
        bus.delete_all_keys().await.unwrap();
        let got = got.expect("read retried on a fresh connection");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].entry_id, &got[0].envelope), (entry, &e));
    }
}
