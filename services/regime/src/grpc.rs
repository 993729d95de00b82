//! gRPC handlers of `grodt.v1.RegimeService`. GetRegime and GetRegimeHistory
//! read the store (what the bar consumer committed), Classify runs the
//! library's classifier over the request's bars.

use std::sync::Arc;

use grodt_kit::status::to_status;
use grodt_proto::v1;
use grodt_proto::v1::regime_service_server::RegimeService;
use grodt_proto::v1::{
    ClassifyRequest, ClassifyResponse, GetRegimeHistoryRequest, GetRegimeHistoryResponse,
    GetRegimeRequest, GetRegimeResponse,
};
use grodt_regimes::Decision;
use grodt_store::{PageRequest, RegimeChangeFilter, Store, StoreError};
use tonic::{Request, Response, Status};

use crate::convert::{
    classify_bars, decision_to_state, params_to_config, timeframe_field, ts_from_proto,
};
use crate::engine::Persisted;
use crate::error::RegimeSvcError;

/// The handler behind `grodt.v1.RegimeService`.
pub struct RegimeApi {
    store: Store,
    catalog: Arc<crate::catalog::CatalogSlot>,
    /// Dropped with the server: stops the bar consumer.
    _stop: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for RegimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegimeApi").finish_non_exhaustive()
    }
}

impl RegimeApi {
    /// Handlers over `store` (and the catalog of `catalog`, for Classify
    /// by dataset id); `stop` lives as long as they do.
    pub fn new(
        store: Store,
        catalog: Arc<crate::catalog::CatalogSlot>,
        stop: Arc<dyn Send + Sync>,
    ) -> Self {
        Self {
            store,
            catalog,
            _stop: stop,
        }
    }

    /// The timeframe label of (symbol, timeframe field): the one asked for,
    /// or the only one the symbol has. NOT_FOUND naming the symbol if it has none.
    async fn resolve(&self, symbol: &str, timeframe: i32) -> Result<String, RegimeSvcError> {
        if symbol.is_empty() {
            return Err(RegimeSvcError::invalid("symbol", "required"));
        }
        let asked = timeframe_field("timeframe", timeframe)?;
        let states = self.store.regimes().list_states(Some(symbol)).await?;
        if states.is_empty() {
            return Err(RegimeSvcError::NotFound(format!(
                "symbol {symbol}: unknown to the regime service (no bars of it received)"
            )));
        }
        match asked {
            Some(tf) if states.iter().any(|s| s.timeframe == tf) => Ok(tf.to_owned()),
            Some(tf) => Err(RegimeSvcError::NotFound(format!(
                "symbol {symbol}: no bars on timeframe {tf} received (it has {})",
                states
                    .iter()
                    .map(|s| s.timeframe.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None if states.len() == 1 => Ok(states[0].timeframe.clone()),
            None => Err(RegimeSvcError::invalid(
                "timeframe",
                format!(
                    "symbol {symbol} is classified on {}; name one",
                    states
                        .iter()
                        .map(|s| s.timeframe.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    async fn get_regime_inner(
        &self,
        r: GetRegimeRequest,
    ) -> Result<GetRegimeResponse, RegimeSvcError> {
        let tf = self.resolve(&r.symbol, r.timeframe).await?;
        let row = self
            .store
            .regimes()
            .get_state(&r.symbol, &tf)
            .await?
            .ok_or_else(|| RegimeSvcError::NotFound(format!("symbol {}: unknown", r.symbol)))?;
        let p = Persisted::from_json(&row.state)?;
        let (Some(last), Some(since)) = (p.last.as_ref(), p.since_ns) else {
            return Err(RegimeSvcError::Precondition(format!(
                "symbol {} on {tf}: warming up ({} bars taken, no decision yet)",
                r.symbol, p.bars
            )));
        };
        Ok(GetRegimeResponse {
            state: Some(decision_to_state(&r.symbol, &tf, last, since)),
        })
    }

    async fn history_inner(
        &self,
        r: GetRegimeHistoryRequest,
    ) -> Result<GetRegimeHistoryResponse, RegimeSvcError> {
        let (mut from_ns, mut to_ns) = (None, None);
        if let Some(range) = &r.range {
            from_ns = range
                .start
                .as_ref()
                .map(|t| ts_from_proto("range.start", t))
                .transpose()?;
            to_ns = range
                .end
                .as_ref()
                .map(|t| ts_from_proto("range.end", t))
                .transpose()?;
            if let (Some(a), Some(b)) = (from_ns, to_ns)
                && b <= a
            {
                return Err(RegimeSvcError::invalid(
                    "range.end",
                    "must be after range.start",
                ));
            }
        }
        let page = r.page.unwrap_or_default();
        let tf = self.resolve(&r.symbol, r.timeframe).await?;
        let filter = RegimeChangeFilter {
            symbol: r.symbol.clone(),
            timeframe: tf.clone(),
            from_ns,
            to_ns,
        };
        let listed = self
            .store
            .regimes()
            .history(
                &filter,
                &PageRequest {
                    page_size: page.page_size,
                    page_token: page.page_token,
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::InvalidPageToken { .. } => {
                    RegimeSvcError::invalid("page.page_token", "not a token of this listing")
                }
                other => other.into(),
            })?;
        let changes = listed
            .items
            .iter()
            .map(|c| {
                let d: Decision = serde_json::from_value(c.data.decision.clone())
                    .map_err(|e| RegimeSvcError::Corrupt(format!("stored decision: {e}")))?;
                Ok(decision_to_state(&c.data.symbol, &tf, &d, c.data.ts_ns))
            })
            .collect::<Result<Vec<_>, RegimeSvcError>>()?;
        Ok(GetRegimeHistoryResponse {
            changes,
            page: Some(v1::PageResponse {
                next_page_token: listed.next_page_token,
            }),
        })
    }
}

/// Classify, stateless: the library's classifier over the request's bars.
///
/// # Errors
/// INVALID_ARGUMENT naming the field for bad bars or parameters.
pub async fn classify(r: ClassifyRequest) -> Result<ClassifyResponse, RegimeSvcError> {
    let config = params_to_config(r.params.as_ref())?;
    let (symbol, tf_raw, precision, bars) = classify_bars(&r.bars)?;
    let tf = v1::Timeframe::try_from(tf_raw)
        .ok()
        .and_then(crate::convert::timeframe_label)
        .unwrap_or("");
    classify_series(config, &symbol, tf, tf_raw, precision, bars).await
}

/// Classify over a catalog dataset (`dataset_id`, `range`) or over the
/// request's bars; never both.
///
/// # Errors
/// As [`classify`]; NOT_FOUND for an unknown dataset.
pub async fn classify_request(
    catalog: &crate::catalog::CatalogSlot,
    r: ClassifyRequest,
) -> Result<ClassifyResponse, RegimeSvcError> {
    if r.dataset_id.is_empty() {
        if r.range.is_some() {
            return Err(RegimeSvcError::invalid(
                "range",
                "only with dataset_id (request bars are classified whole)",
            ));
        }
        return classify(r).await;
    }
    if !r.bars.is_empty() {
        return Err(RegimeSvcError::invalid(
            "bars",
            "must be empty when dataset_id is set (one source of bars)",
        ));
    }
    let config = params_to_config(r.params.as_ref())?;
    let range = crate::convert::range_from_proto("range", r.range.as_ref())?;
    let data = catalog.load(&r.dataset_id, range).await?;
    let tf_raw = crate::convert::timeframe_from_label(&data.timeframe) as i32;
    classify_series(
        config,
        &data.symbol,
        &data.timeframe,
        tf_raw,
        data.price_precision,
        data.bars,
    )
    .await
}

/// The classifier over one series, as the response's states.
async fn classify_series(
    config: grodt_regimes::RegimeConfig,
    symbol: &str,
    tf: &str,
    tf_raw: i32,
    precision: u8,
    bars: Vec<grodt_core::Bar>,
) -> Result<ClassifyResponse, RegimeSvcError> {
    let decisions = tokio::task::spawn_blocking(move || {
        grodt_regimes::classify(config, precision, &bars).map(|d| (d, bars))
    })
    .await
    .map_err(|e| RegimeSvcError::Corrupt(format!("classify task failed: {e}")))?
    .map_err(|e| crate::convert::config_error("params", &e))?;
    let (decisions, bars) = decisions;
    let warmup_bars = decisions
        .first()
        .map_or(bars.len(), |d| bars.partition_point(|b| b.ts < d.ts));
    let mut since = 0i64;
    let states = decisions
        .iter()
        .map(|d| {
            if d.changed {
                since = d.ts;
            }
            let mut s = decision_to_state(symbol, tf, d, since);
            s.timeframe = tf_raw;
            s
        })
        .collect();
    Ok(ClassifyResponse {
        states,
        warmup_bars: u32::try_from(warmup_bars).unwrap_or(u32::MAX),
    })
}

#[tonic::async_trait]
impl RegimeService for RegimeApi {
    async fn get_regime(
        &self,
        request: Request<GetRegimeRequest>,
    ) -> Result<Response<GetRegimeResponse>, Status> {
        self.get_regime_inner(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }

    async fn get_regime_history(
        &self,
        request: Request<GetRegimeHistoryRequest>,
    ) -> Result<Response<GetRegimeHistoryResponse>, Status> {
        self.history_inner(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }

    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        classify_request(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }
}
