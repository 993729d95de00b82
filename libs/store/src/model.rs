//! Rows as domain values, independent of the backend that stores them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

/// What a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// One strategy over one data range (backtest-worker).
    Backtest,
    /// A parameter search made of many backtests (optimizer).
    Optimization,
}

impl RunKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backtest => "backtest",
            Self::Optimization => "optimization",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "backtest" => Ok(Self::Backtest),
            "optimization" => Ok(Self::Optimization),
            other => Err(StoreError::InvalidArgument {
                field: "kind",
                reason: format!("unknown run kind {other:?}"),
            }),
        }
    }
}

/// Where a run is in its lifecycle:
/// `queued -> running -> succeeded | failed | cancelled`, and
/// `queued -> cancelled` (a run cancelled before a worker picked it up).
/// The last three are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is computing it.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// True for statuses a run never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Whether the lifecycle allows `self -> to`.
    pub fn can_transition_to(self, to: RunStatus) -> bool {
        to.allowed_from().contains(&self)
    }

    /// The statuses from which `self` may be entered; the backends use it in
    /// a single conditional UPDATE so that a transition is atomic.
    pub(crate) fn allowed_from(self) -> &'static [RunStatus] {
        match self {
            Self::Queued => &[],
            Self::Running => &[Self::Queued],
            Self::Succeeded | Self::Failed => &[Self::Running],
            Self::Cancelled => &[Self::Queued, Self::Running],
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::InvalidArgument {
                field: "status",
                reason: format!("unknown run status {s:?}"),
            })
    }
}

/// A backtest or optimization run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Chosen by the caller (so a retried create is detectable).
    pub id: Uuid,
    /// What the run computes.
    pub kind: RunKind,
    /// Lifecycle position.
    pub status: RunStatus,
    /// The request as received, opaque to the store.
    pub request: serde_json::Value,
    /// The exact request as bytes (protobuf), when the creator gave them.
    pub request_pb: Option<Vec<u8>>,
    /// The result summary once set, opaque to the store.
    pub result: Option<serde_json::Value>,
    /// The exact result as bytes (protobuf), when the writer gave them.
    pub result_pb: Option<Vec<u8>>,
    /// Net profit and loss of the run once known, exact.
    pub net_pnl: Option<Decimal>,
    /// When the run was created (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// When the run was last changed (microsecond precision).
    pub updated_at: DateTime<Utc>,
}

/// One namespaced setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Owner of the key, e.g. `risk`.
    pub namespace: String,
    /// Key within the namespace, e.g. `max_order_notional`.
    pub key: String,
    /// The value, opaque to the store. Keep decimals as JSON strings so they
    /// stay exact.
    pub value: serde_json::Value,
    /// When the value last changed (a put of an equal value leaves it).
    pub updated_at: DateTime<Utc>,
}

/// Which page of a listing to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Maximum rows per page; 0 means [`PageRequest::DEFAULT_SIZE`], and
    /// values above [`PageRequest::MAX_SIZE`] are clamped to it.
    pub page_size: u32,
    /// Empty for the first page, else the `next_page_token` of the previous page.
    pub page_token: String,
}

impl PageRequest {
    /// Page size when none is asked for.
    pub const DEFAULT_SIZE: u32 = 50;
    /// Largest page served.
    pub const MAX_SIZE: u32 = 1000;

    /// The first page of `page_size` rows.
    pub fn first(page_size: u32) -> Self {
        Self {
            page_size,
            page_token: String::new(),
        }
    }

    pub(crate) fn effective_size(&self) -> u32 {
        match self.page_size {
            0 => Self::DEFAULT_SIZE,
            n => n.min(Self::MAX_SIZE),
        }
    }

    /// The creation sequence number after which this page starts.
    pub(crate) fn after_seq(&self) -> Result<i64, StoreError> {
        if self.page_token.is_empty() {
            return Ok(0);
        }
        decode_token(&self.page_token).ok_or_else(|| StoreError::InvalidPageToken {
            token: self.page_token.clone(),
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, oldest first.
    pub items: Vec<T>,
    /// Empty when this is the last page.
    pub next_page_token: String,
}

const TOKEN_PREFIX: &str = "r1";

/// Tokens are `r1` + 16 hex digits of the last row's creation sequence
/// number. Callers must treat them as opaque; the prefix lets the format
/// change later without misreading old tokens.
pub(crate) fn encode_token(seq: i64) -> String {
    format!("{TOKEN_PREFIX}{seq:016x}")
}

fn decode_token(token: &str) -> Option<i64> {
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let seq = u64::from_str_radix(hex, 16).ok()?;
    i64::try_from(seq).ok().filter(|s| *s > 0)
}

/// Builds a page from up to `size + 1` rows fetched in `seq` order: the
/// extra row only says whether another page follows.
pub(crate) fn paginate<T>(mut rows: Vec<(i64, T)>, size: u32) -> Page<T> {
    let size = size as usize;
    let more = rows.len() > size;
    rows.truncate(size);
    let next_page_token = match (more, rows.last()) {
        (true, Some((seq, _))) => encode_token(*seq),
        _ => String::new(),
    };
    Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_page_token,
    }
}

/// Current time at the precision both backends keep (microseconds), so a
/// value reads back equal to what was written.
pub(crate) fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_table() {
        use RunStatus::*;
        let allowed = [
            (Queued, Running),
            (Queued, Cancelled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
        ];
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            if from.is_terminal() {
                assert!(RunStatus::ALL.iter().all(|to| !from.can_transition_to(*to)));
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for st in RunStatus::ALL {
            assert_eq!(st.as_str().parse::<RunStatus>().ok(), Some(st));
        }
        for k in [RunKind::Backtest, RunKind::Optimization] {
            assert_eq!(k.as_str().parse::<RunKind>().ok(), Some(k));
        }
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn tokens() {
        for seq in [1_i64, 42, i64::MAX] {
            let req = PageRequest {
                page_size: 1,
                page_token: encode_token(seq),
            };
            assert_eq!(req.after_seq().ok(), Some(seq));
        }
        for bad in [
            "x",
            "r1",
            "r1zz",
            "r10000000000000000",
            "r1FFFFFFFFFFFFFFFF",
            "r18000000000000000",
            "r1000000000000002a0",
        ] {
            let req = PageRequest {
                page_size: 1,
                page_token: bad.into(),
            };
            assert!(
                matches!(req.after_seq(), Err(StoreError::InvalidPageToken { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            PageRequest::first(0).effective_size(),
            PageRequest::DEFAULT_SIZE
        );
        assert_eq!(
            PageRequest::first(5000).effective_size(),
            PageRequest::MAX_SIZE
        );
    }

    #[test]
    fn paginate_marks_more() {
        let page = paginate(vec![(1, 'a'), (2, 'b'), (3, 'c')], 2);
        assert_eq!(page.items, vec!['a', 'b']);
        assert_eq!(page.next_page_token, encode_token(2));
        let page = paginate(vec![(1, 'a'), (2, 'b')], 2);
        assert!(page.next_page_token.is_empty());
    }
}
