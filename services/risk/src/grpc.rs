//! gRPC handlers of `grodt.v1.RiskService`. Reads (CheckOrder, GetLimits,
//! GetSnapshot) look at the in-memory state under the engine's lock;
//! SetLimits, Halt and Resume are journaled commands of the fold.

use std::sync::Arc;

use grodt_proto::v1;
use grodt_proto::v1::risk_service_server::RiskService;
use grodt_proto::v1::{
    CheckOrderRequest, CheckOrderResponse, GetLimitsRequest, GetLimitsResponse, GetSnapshotRequest,
    GetSnapshotResponse, HaltRequest, HaltResponse, ResumeRequest, ResumeResponse,
    SetLimitsRequest, SetLimitsResponse,
};
use grodt_risk_rules::Input;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::convert::{
    halt_to_proto, limits_from_proto, limits_to_proto, order_from_proto, snapshot_to_proto, text,
    violation_to_proto,
};
use crate::engine::Engine;
use crate::error::{RiskSvcError, to_status};

/// Longest reason accepted.
const MAX_REASON: usize = 512;
/// Longest operator name accepted.
const MAX_BY: usize = 128;

/// The handler behind `grodt.v1.RiskService`.
pub struct RiskApi {
    engine: Arc<Engine>,
    /// Dropped with the server: stops the consumers.
    _stop: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for RiskApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskApi").finish_non_exhaustive()
    }
}

impl RiskApi {
    /// Handlers over `engine`; `stop` lives as long as they do.
    pub fn new(engine: Arc<Engine>, stop: Arc<dyn Send + Sync>) -> Self {
        Self {
            engine,
            _stop: stop,
        }
    }
}

fn reply<T>(r: Result<T, RiskSvcError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(|e| to_status(&e))
}

#[tonic::async_trait]
impl RiskService for RiskApi {
    async fn check_order(
        &self,
        request: Request<CheckOrderRequest>,
    ) -> Result<Response<CheckOrderResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let spec = req
                .order
                .as_ref()
                .ok_or_else(|| RiskSvcError::invalid("order", "required"))?;
            let order = order_from_proto(spec)?;
            let reference = match req.reference_price.as_ref() {
                None => None,
                Some(d) => {
                    let p = grodt_proto::convert::parse_decimal(&d.value)
                        .map_err(|e| RiskSvcError::invalid("reference_price", e))?;
                    if p <= Decimal::ZERO {
                        return Err(RiskSvcError::invalid("reference_price", "must be > 0"));
                    }
                    Some(p)
                }
            };
            let core = self.engine.lock().await?;
            let state = &core.state;
            if reference.is_none() && state.last_close(&order.symbol).is_none() {
                return Err(RiskSvcError::Precondition(format!(
                    "no price of {} seen on grodt.bars.v1: pass reference_price",
                    order.symbol
                )));
            }
            let check = state.check(&order, reference, state.now_ns().unwrap_or(0));
            Ok(CheckOrderResponse {
                approved: check.approved(),
                violations: check.violations.iter().map(violation_to_proto).collect(),
                reference_price: check.reference_price.map(v1::Decimal::from),
            })
        }
        .await;
        reply(result)
    }

    async fn get_limits(
        &self,
        _request: Request<GetLimitsRequest>,
    ) -> Result<Response<GetLimitsResponse>, Status> {
        let result = async {
            let core = self.engine.lock().await?;
            Ok(GetLimitsResponse {
                limits: Some(limits_to_proto(core.state.limits())),
            })
        }
        .await;
        reply(result)
    }

    async fn set_limits(
        &self,
        request: Request<SetLimitsRequest>,
    ) -> Result<Response<SetLimitsResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let limits = limits_from_proto(
                req.limits
                    .as_ref()
                    .ok_or_else(|| RiskSvcError::invalid("limits", "required"))?,
            )?;
            let by = text("updated_by", &req.updated_by, MAX_BY)?;
            let reason = text("reason", &req.reason, MAX_REASON)?;
            let expected = req.expected_version;
            self.engine
                .command(
                    |s, at_ns| {
                        let current = s.limits().version;
                        if current != expected {
                            return Err(RiskSvcError::Aborted(format!(
                                "expected_version {expected} is stale: the limits are at \
                                 version {current}; read them again with GetLimits"
                            )));
                        }
                        Ok(Some(Input::SetLimits {
                            limits,
                            expected_version: expected,
                            by,
                            reason,
                            at_ns,
                        }))
                    },
                    |s| SetLimitsResponse {
                        limits: Some(limits_to_proto(s.limits())),
                    },
                )
                .await
        }
        .await;
        reply(result)
    }

    async fn halt(&self, request: Request<HaltRequest>) -> Result<Response<HaltResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let reason = text("reason", &req.reason, MAX_REASON)?;
            let by = text("by", &req.by, MAX_BY)?;
            if req.cancel_open_orders {
                tracing::warn!(
                    %by,
                    "Halt asked to cancel open orders: risk cannot; cancel them with \
                     ExecutionService.CancelOrder (docs/operations.md)"
                );
            }
            self.engine
                .command(
                    |s, at_ns| {
                        Ok(s.halt()
                            .is_none()
                            .then_some(Input::Halt { reason, by, at_ns }))
                    },
                    |s| HaltResponse {
                        state: Some(halt_to_proto(s.halt())),
                    },
                )
                .await
        }
        .await;
        reply(result)
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let reason = text("reason", &req.reason, MAX_REASON)?;
            let by = text("by", &req.by, MAX_BY)?;
            self.engine
                .command(
                    |s, at_ns| {
                        Ok(s.halt()
                            .is_some()
                            .then_some(Input::Resume { reason, by, at_ns }))
                    },
                    |s| ResumeResponse {
                        state: Some(halt_to_proto(s.halt())),
                    },
                )
                .await
        }
        .await;
        reply(result)
    }

    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        let result = async {
            let core = self.engine.lock().await?;
            let s = &core.state;
            Ok(snapshot_to_proto(&s.snapshot(), s.halt(), s.limits()))
        }
        .await;
        reply(result)
    }
}
