//! gRPC handlers of `grodt.v1.StrategyService`. Deploy, Start, Pause and
//! Stop are journaled commands of the fold; GetState and ListStrategies read
//! the state under the engine's lock.

use std::sync::Arc;

use grodt_core::Decimal;
use grodt_proto::v1;
use grodt_proto::v1::strategy_service_server::StrategyService;
use grodt_proto::v1::{
    DeployRequest, DeployResponse, GetStateRequest, GetStateResponse, ListStrategiesRequest,
    ListStrategiesResponse, PauseRequest, PauseResponse, StartRequest, StartResponse, StopRequest,
    StopResponse,
};
use grodt_strategies::registry::{ParamType, StrategySpec};
use tonic::{Request, Response, Status};

use crate::convert::ts_to_proto;
use crate::engine::Engine;
use crate::error::{StrategySvcError, to_status};
use crate::state::{Instance, InstanceSpec, Record, State, Status as St};

/// Longest reason accepted.
const MAX_REASON: usize = 512;
/// Default and largest page.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The handler behind `grodt.v1.StrategyService`.
pub struct StrategyApi {
    engine: Arc<Engine>,
    /// Dropped with the server: stops the consumers.
    _stop: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for StrategyApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyApi").finish_non_exhaustive()
    }
}

impl StrategyApi {
    /// Handlers over `engine`; `stop` lives as long as they do.
    pub fn new(engine: Arc<Engine>, stop: Arc<dyn Send + Sync>) -> Self {
        Self {
            engine,
            _stop: stop,
        }
    }
}

fn reply<T>(r: Result<T, StrategySvcError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(|e| to_status(&e))
}

/// A `DeployRequest` as a spec (checked by [`InstanceSpec::validate`]).
///
/// # Errors
/// A capital that is absent or not a decimal.
pub fn spec_from_request(r: &DeployRequest) -> Result<InstanceSpec, StrategySvcError> {
    let capital = grodt_proto::convert::required_decimal("capital", r.capital.as_ref())?;
    Ok(InstanceSpec {
        instance_id: r.instance_id.clone(),
        strategy_name: r.strategy_name.clone(),
        params: r.params.clone().into_iter().collect(),
        symbols: r.symbols.clone(),
        timeframe: r.timeframe,
        allowed_regimes: r.allowed_regimes.clone(),
        capital,
    })
}

/// The Deploy decision: a new instance (its record), the same one again
/// (nothing), or a conflict.
///
/// # Errors
/// INVALID_ARGUMENT naming the field, ALREADY_EXISTS for other settings.
pub fn decide_deploy(
    state: &State,
    spec: InstanceSpec,
    start: bool,
    at_ns: i64,
) -> Result<Option<(String, Record)>, StrategySvcError> {
    spec.validate(state.instruments())?;
    if let Some(i) = state.instances.get(&spec.instance_id) {
        if i.spec == spec {
            return Ok(None);
        }
        return Err(StrategySvcError::AlreadyExists(format!(
            "instance {:?} exists with other settings",
            spec.instance_id
        )));
    }
    Ok(Some((
        format!("deploy:{}", spec.instance_id),
        Record::Deploy { spec, start, at_ns },
    )))
}

fn existing<'a>(state: &'a State, id: &str) -> Result<&'a Instance, StrategySvcError> {
    if id.is_empty() {
        return Err(StrategySvcError::invalid("instance_id", "required"));
    }
    state
        .instances
        .get(id)
        .ok_or_else(|| StrategySvcError::NotFound(id.to_owned()))
}

fn cmd_source(i: &Instance) -> String {
    format!("cmd:{}:{}", i.spec.instance_id, i.commands + 1)
}

fn check_reason(reason: &str) -> Result<(), StrategySvcError> {
    if reason.len() > MAX_REASON {
        return Err(StrategySvcError::invalid(
            "reason",
            format!("at most {MAX_REASON} chars"),
        ));
    }
    Ok(())
}

fn dec(d: Decimal) -> Option<v1::Decimal> {
    Some(d.into())
}

/// An instance as the wire's `StrategyInstance`.
#[must_use]
pub fn instance_to_proto(state: &State, i: &Instance) -> v1::StrategyInstance {
    // Sums out of the decimal range are left unset (`None`), never clamped.
    let mut realized = Some(Decimal::ZERO);
    let mut unrealized = Some(Decimal::ZERO);
    let mut positions = Vec::new();
    for b in &i.books {
        let marks = b.runner.last_closes();
        for (((symbol, qty), pnl), mark) in b.runner.positions().into_iter().zip(&b.pnl).zip(marks)
        {
            let u = pnl.unrealized(mark);
            realized = realized.and_then(|r| r.checked_add(pnl.realized));
            unrealized = unrealized.zip(u).and_then(|(a, u)| a.checked_add(u));
            positions.push(v1::Position {
                symbol,
                strategy_id: i.spec.instance_id.clone(),
                quantity: dec(qty),
                average_price: (!qty.is_zero()).then(|| pnl.avg.into()),
                mark_price: mark.map(v1::Decimal::from),
                realized_pnl: dec(pnl.realized),
                unrealized_pnl: u.map(v1::Decimal::from),
                updated_at: b.runner.last_bar_ts().map(ts_to_proto),
            });
        }
    }
    v1::StrategyInstance {
        instance_id: i.spec.instance_id.clone(),
        strategy_name: i.spec.strategy_name.clone(),
        params: i.spec.params.clone().into_iter().collect(),
        symbols: i.spec.symbols.clone(),
        timeframe: i.spec.timeframe,
        allowed_regimes: i.spec.allowed_regimes.clone(),
        capital: dec(i.spec.capital),
        state: i.status.to_proto() as i32,
        gated: state.gated(i),
        positions,
        realized_pnl: realized.map(v1::Decimal::from),
        unrealized_pnl: unrealized.map(v1::Decimal::from),
        bars_processed: i.bars_processed(),
        intents_emitted: i.intents_emitted(),
        cancels_emitted: i.cancels_emitted,
        last_bar_time: i.last_bar_ts().map(ts_to_proto),
        deployed_at: Some(ts_to_proto(i.deployed_at)),
        updated_at: Some(ts_to_proto(i.updated_at)),
        error: i.error.clone().unwrap_or_default(),
    }
}

fn get(state: &State, id: &str) -> Result<v1::StrategyInstance, StrategySvcError> {
    Ok(instance_to_proto(state, existing(state, id)?))
}

/// A registry schema as the wire's `StrategyInfo`.
#[must_use]
pub fn info_of(s: &StrategySpec) -> v1::StrategyInfo {
    let parameters = s
        .params
        .iter()
        .map(|p| {
            let (kind, default, min, max, choices) = match &p.kind {
                ParamType::Int {
                    min, max, default, ..
                } => (
                    v1::ParameterKind::Integer,
                    default.to_string(),
                    min.to_string(),
                    max.to_string(),
                    Vec::new(),
                ),
                ParamType::Float {
                    min, max, default, ..
                } => (
                    v1::ParameterKind::Decimal,
                    default.to_string(),
                    min.to_string(),
                    max.to_string(),
                    Vec::new(),
                ),
                ParamType::Decimal {
                    min, max, default, ..
                } => (
                    v1::ParameterKind::Decimal,
                    default.to_string(),
                    min.to_string(),
                    max.to_string(),
                    Vec::new(),
                ),
                ParamType::Bool { default } => (
                    v1::ParameterKind::Bool,
                    default.to_string(),
                    String::new(),
                    String::new(),
                    Vec::new(),
                ),
                ParamType::Choice { options, default } => (
                    v1::ParameterKind::Choice,
                    (*default).to_owned(),
                    String::new(),
                    String::new(),
                    options.iter().map(|o| (*o).to_owned()).collect(),
                ),
                // A set travels as a CHOICE whose value is a comma-separated
                // subset of `choices` (the description says so).
                ParamType::Set { options, default } => (
                    v1::ParameterKind::Choice,
                    default.join(","),
                    String::new(),
                    String::new(),
                    options.iter().map(|o| (*o).to_owned()).collect(),
                ),
            };
            let description = if matches!(p.kind, ParamType::Set { .. }) {
                format!("{} (comma-separated subset of the choices)", p.description)
            } else {
                p.description.to_owned()
            };
            v1::ParameterSpec {
                name: p.name.to_owned(),
                description,
                kind: kind as i32,
                default_value: default,
                min,
                max,
                choices,
            }
        })
        .collect();
    v1::StrategyInfo {
        name: s.name.to_owned(),
        description: s.description.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        parameters,
        warmup_bars: 0,
    }
}

#[tonic::async_trait]
impl StrategyService for StrategyApi {
    async fn list_strategies(
        &self,
        request: Request<ListStrategiesRequest>,
    ) -> Result<Response<ListStrategiesResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let page = req.page.unwrap_or_default();
            let size = match page.page_size as usize {
                0 => PAGE,
                n => n.min(MAX_PAGE),
            };
            // The token is the last instance id of the previous page, with the filter.
            let filter = req.state;
            let after = if page.page_token.is_empty() {
                None
            } else {
                let (f, id) = page
                    .page_token
                    .split_once(':')
                    .ok_or_else(|| StrategySvcError::invalid("page.page_token", "not a token"))?;
                if f != filter.to_string() {
                    return Err(StrategySvcError::invalid(
                        "page.page_token",
                        "from a request with other filters",
                    ));
                }
                Some(id.to_owned())
            };
            let strategies = grodt_strategies::registry::specs()
                .iter()
                .map(info_of)
                .collect();
            self.engine
                .read(|state| {
                    let mut instances = Vec::new();
                    let mut next = String::new();
                    for (id, i) in &state.instances {
                        if after.as_ref().is_some_and(|a| id <= a) {
                            continue;
                        }
                        if filter != 0 && i.status.to_proto() as i32 != filter {
                            continue;
                        }
                        if instances.len() == size {
                            next = format!(
                                "{filter}:{}",
                                instances
                                    .last()
                                    .map_or("", |x: &v1::StrategyInstance| x.instance_id.as_str())
                            );
                            break;
                        }
                        instances.push(instance_to_proto(state, i));
                    }
                    ListStrategiesResponse {
                        strategies,
                        instances,
                        page: Some(v1::PageResponse {
                            next_page_token: next,
                        }),
                    }
                })
                .await
        }
        .await;
        reply(result)
    }

    async fn deploy(
        &self,
        request: Request<DeployRequest>,
    ) -> Result<Response<DeployResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let spec = spec_from_request(&req)?;
            let id = spec.instance_id.clone();
            let instance = self
                .engine
                .command(
                    |state, at| decide_deploy(state, spec, req.start, at),
                    |state| get(state, &id),
                )
                .await?;
            Ok(DeployResponse {
                instance: Some(instance),
            })
        }
        .await;
        reply(result)
    }

    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let id = request.into_inner().instance_id;
        let result = self
            .engine
            .command(
                |state, at| {
                    let i = existing(state, &id)?;
                    match i.status {
                        St::Running => Ok(None),
                        St::Deployed | St::Paused => Ok(Some((
                            cmd_source(i),
                            Record::Start {
                                instance_id: id.clone(),
                                at_ns: at,
                            },
                        ))),
                        s => Err(StrategySvcError::Precondition(format!(
                            "instance {id:?} is {}: it cannot start again (deploy a new one)",
                            s.name()
                        ))),
                    }
                },
                |state| get(state, &id),
            )
            .await
            .map(|i| StartResponse { instance: Some(i) });
        reply(result)
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let req = request.into_inner();
        let id = req.instance_id.clone();
        let result = self
            .engine
            .command(
                |state, at| {
                    check_reason(&req.reason)?;
                    let i = existing(state, &id)?;
                    if matches!(i.status, St::Stopped | St::Failed) {
                        return Ok(None);
                    }
                    Ok(Some((
                        cmd_source(i),
                        Record::Stop {
                            instance_id: id.clone(),
                            cancel_open_orders: req.cancel_open_orders,
                            flatten: req.flatten,
                            reason: req.reason.clone(),
                            at_ns: at,
                        },
                    )))
                },
                |state| get(state, &id),
            )
            .await
            .map(|i| StopResponse { instance: Some(i) });
        reply(result)
    }

    async fn pause(
        &self,
        request: Request<PauseRequest>,
    ) -> Result<Response<PauseResponse>, Status> {
        let req = request.into_inner();
        let id = req.instance_id.clone();
        let result = self
            .engine
            .command(
                |state, at| {
                    check_reason(&req.reason)?;
                    let i = existing(state, &id)?;
                    match i.status {
                        St::Paused => Ok(None),
                        St::Running => Ok(Some((
                            cmd_source(i),
                            Record::Pause {
                                instance_id: id.clone(),
                                reason: req.reason.clone(),
                                at_ns: at,
                            },
                        ))),
                        s => Err(StrategySvcError::Precondition(format!(
                            "instance {id:?} is {}: only a running instance pauses",
                            s.name()
                        ))),
                    }
                },
                |state| get(state, &id),
            )
            .await
            .map(|i| PauseResponse { instance: Some(i) });
        reply(result)
    }

    async fn get_state(
        &self,
        request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let id = request.into_inner().instance_id;
        let result = async {
            let i = self.engine.read(|state| get(state, &id)).await??;
            Ok(GetStateResponse { instance: Some(i) })
        }
        .await;
        reply(result)
    }
}
