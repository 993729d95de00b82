//! gRPC handlers of `grodt.v1.ExecutionService`: commands go through the
//! engine (journaled like bus inputs), reads look at the engine's state.

use std::pin::Pin;
use std::sync::Arc;

use grodt_core::{Decimal, OrderStatus, Position};
use grodt_paper::{OrderState, PaperError};
use grodt_proto::v1;
use grodt_proto::v1::execution_service_server::ExecutionService;
use grodt_proto::v1::{
    CancelOrderRequest, CancelOrderResponse, GetAccountRequest, GetAccountResponse,
    GetOrderRequest, GetOrderResponse, ListOrdersRequest, ListOrdersResponse, ListPositionsRequest,
    ListPositionsResponse, StreamFillsRequest, StreamFillsResponse, SubmitOrderRequest,
    SubmitOrderResponse,
};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{
    fill_to_proto, order_to_proto, status_from_proto, ts_from_proto, ts_to_proto,
};
use crate::engine::{Engine, OrderKey, State};
use crate::error::ExecError;
use crate::reconcile::positions_from_fills;

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How far back `StreamFills.since` may reach.
const MAX_SINCE_NS: i64 = 7 * 86_400 * 1_000_000_000;

/// The handler behind `grodt.v1.ExecutionService`.
pub struct ExecutionApi {
    engine: Arc<Engine>,
    account_id: String,
    currency: String,
    /// Dropped with the server: stops the consumers.
    _stop: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for ExecutionApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionApi")
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

impl ExecutionApi {
    /// Handlers over `engine`; `stop` lives as long as they do.
    pub fn new(
        engine: Arc<Engine>,
        account_id: String,
        currency: String,
        stop: Arc<dyn Send + Sync>,
    ) -> Self {
        Self {
            engine,
            account_id,
            currency,
            _stop: stop,
        }
    }
}

fn order_key(r: Option<&v1::OrderRef>) -> Result<OrderKey, ExecError> {
    match r.and_then(|r| r.id.as_ref()) {
        Some(v1::order_ref::Id::OrderId(id)) if !id.is_empty() => Ok(OrderKey::OrderId(id.clone())),
        Some(v1::order_ref::Id::ClientOrderId(c)) if !c.is_empty() => {
            Ok(OrderKey::ClientOrderId(c.clone()))
        }
        _ => Err(ExecError::invalid(
            "order",
            "required: an order_id or a client_order_id",
        )),
    }
}

fn find<'a>(state: &'a State, key: &OrderKey) -> Result<&'a OrderState, ExecError> {
    let cid = match key {
        OrderKey::ClientOrderId(c) => Some(c.as_str()),
        OrderKey::OrderId(id) => state.by_order_id.get(id).map(String::as_str),
    };
    cid.and_then(|c| state.order(c)).ok_or_else(|| {
        ExecError::NotFound(match key {
            OrderKey::ClientOrderId(c) => format!("order with client_order_id {c} not found"),
            OrderKey::OrderId(id) => format!("order {id} not found"),
        })
    })
}

fn decision_of(state: &State, cid: &str) -> i64 {
    state.order(cid).map_or(0, |o| o.ticket.decision_ts)
}

/// The wire position of `p` (symbol, strategy) marked at `mark`.
fn position_to_proto(
    symbol: &str,
    strategy_id: &str,
    p: &Position,
    mark: Option<grodt_core::Price>,
    updated: i64,
) -> v1::Position {
    let unrealized = mark
        .and_then(|m| p.unrealized_pnl(m).ok())
        .unwrap_or_default();
    v1::Position {
        symbol: symbol.to_owned(),
        strategy_id: strategy_id.to_owned(),
        quantity: Some(p.quantity().into()),
        average_price: p.avg_price().map(v1::Decimal::from),
        mark_price: mark.map(|m| m.to_decimal().into()),
        realized_pnl: Some(p.realized_pnl.into()),
        unrealized_pnl: Some(unrealized.into()),
        updated_at: Some(ts_to_proto(updated)),
    }
}

/// The filters of a ListOrders request, checked.
struct OrderFilter {
    symbol: String,
    strategy_id: String,
    statuses: Vec<OrderStatus>,
    start: Option<i64>,
    end: Option<i64>,
    open_only: bool,
    /// Hash of the filters, carried in page tokens.
    key: String,
}

impl OrderFilter {
    fn from_request(r: &ListOrdersRequest) -> Result<Self, ExecError> {
        let statuses = r
            .statuses
            .iter()
            .enumerate()
            .map(|(k, s)| {
                status_from_proto(*s).ok_or_else(|| {
                    ExecError::invalid(
                        format!("statuses[{k}]"),
                        "not a known status, not UNSPECIFIED",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (start, end) = match &r.created {
            None => (None, None),
            Some(t) => (
                t.start
                    .as_ref()
                    .map(|x| ts_from_proto("created.start", x))
                    .transpose()?,
                t.end
                    .as_ref()
                    .map(|x| ts_from_proto("created.end", x))
                    .transpose()?,
            ),
        };
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(ExecError::invalid(
                "created.end",
                "must be after created.start",
            ));
        }
        let digest = Sha256::digest(
            format!(
                "{}|{}|{:?}|{start:?}|{end:?}|{}",
                r.symbol, r.strategy_id, r.statuses, r.open_only
            )
            .as_bytes(),
        );
        Ok(Self {
            symbol: r.symbol.clone(),
            strategy_id: r.strategy_id.clone(),
            statuses,
            start,
            end,
            open_only: r.open_only,
            key: digest[..6].iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    fn keeps(&self, o: &OrderState) -> bool {
        (self.symbol.is_empty() || o.ticket.symbol == self.symbol)
            && (self.strategy_id.is_empty() || o.ticket.strategy_id == self.strategy_id)
            && (self.statuses.is_empty() || self.statuses.contains(&o.status))
            && self.start.is_none_or(|s| o.created_ts >= s)
            && self.end.is_none_or(|e| o.created_ts < e)
            && (!self.open_only || !o.status.is_terminal())
    }
}

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {
    type StreamFillsStream = ResponseStream<StreamFillsResponse>;

    async fn submit_order(
        &self,
        request: Request<SubmitOrderRequest>,
    ) -> Result<Response<SubmitOrderResponse>, Status> {
        let r = request.into_inner();
        let spec = r
            .order
            .ok_or_else(|| ExecError::invalid("order", "required"))?;
        if !grodt_paper::ids::is_valid(&spec.client_order_id) {
            return Err(ExecError::invalid(
                "order.client_order_id",
                "must be 1..64 chars of [A-Za-z0-9_-]",
            )
            .into());
        }
        let source = format!("submit:{}", spec.client_order_id);
        let (_, order) = self.engine.submit(&source, &spec, true, None).await?;
        let order = order.ok_or_else(|| {
            ExecError::Corrupt(format!(
                "order {} not held after submit",
                spec.client_order_id
            ))
        })?;
        Ok(Response::new(SubmitOrderResponse {
            order: Some(order_to_proto(&order)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let r = request.into_inner();
        if r.reason.len() > 512 {
            return Err(ExecError::invalid("reason", "at most 512 chars").into());
        }
        let key = order_key(r.order.as_ref())?;
        let order = self.engine.cancel(key).await?;
        Ok(Response::new(CancelOrderResponse {
            order: Some(order_to_proto(&order)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let key = order_key(request.get_ref().order.as_ref())?;
        let state = self.engine.lock().await;
        let order = find(&state, &key)?;
        let cid = &order.ticket.client_order_id;
        let fills = state
            .broker
            .fills()
            .iter()
            .filter(|f| &f.client_order_id == cid)
            .map(|f| fill_to_proto(f, order.ticket.decision_ts))
            .collect();
        Ok(Response::new(GetOrderResponse {
            order: Some(order_to_proto(order)),
            fills,
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let r = request.into_inner();
        let filter = OrderFilter::from_request(&r)?;
        let page = r.page.unwrap_or_default();
        let size = match page.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let state = self.engine.lock().await;
        // The token: the position in creation order below which to go on.
        let mut below = state.created.len();
        if !page.page_token.is_empty() {
            let bad = || ExecError::invalid("page.page_token", "not a token of these filters");
            let (pos, key) = page.page_token.split_once('.').ok_or_else(bad)?;
            if key != filter.key {
                return Err(bad().into());
            }
            below = pos.parse::<usize>().map_err(|_| bad())?.min(below);
        }
        let mut orders = Vec::new();
        let mut next = String::new();
        let mut k = below;
        while k > 0 {
            k -= 1;
            let Some(o) = state.order(&state.created[k]) else {
                continue;
            };
            if !filter.keeps(o) {
                continue;
            }
            if orders.len() == size {
                next = format!("{}.{}", k + 1, filter.key);
                break;
            }
            orders.push(order_to_proto(o));
        }
        Ok(Response::new(ListOrdersResponse {
            orders,
            page: Some(v1::PageResponse {
                next_page_token: next,
            }),
        }))
    }

    async fn list_positions(
        &self,
        request: Request<ListPositionsRequest>,
    ) -> Result<Response<ListPositionsResponse>, Status> {
        let r = request.into_inner();
        let state = self.engine.lock().await;
        let strategy = r.strategy_id.as_str();
        let folded = positions_from_fills(
            state.broker.instruments(),
            state
                .broker
                .fills()
                .iter()
                .filter(|f| strategy.is_empty() || f.strategy_id == strategy),
        )
        .map_err(ExecError::Corrupt)?;
        let updated = state.broker.now();
        let positions = folded
            .iter()
            .filter(|(s, p)| {
                (r.symbol.is_empty() || **s == r.symbol)
                    && (!p.is_flat() || (r.include_flat && !p.realized_pnl.is_zero()))
            })
            .map(|(s, p)| position_to_proto(s, strategy, p, state.marks.get(s).copied(), updated))
            .collect();
        Ok(Response::new(ListPositionsResponse { positions }))
    }

    /// Cash, equity and costs are the venue's ledger, exact. Realized PnL
    /// is gross of costs (commissions, borrow and financing are their own
    /// fields), unrealized PnL marks each position at its symbol's latest
    /// close. Approximations: `margin_used` is the initial margin of the
    /// open positions at their marks (the instrument's initial rate: 1 for
    /// the equities configured today), `buying_power` is equity minus that
    /// margin, floored at 0 (no leverage is offered beyond the venue's own
    /// margin check).
    async fn get_account(
        &self,
        _request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let state = self.engine.lock().await;
        let snap = state.broker.snapshot().map_err(ExecError::from)?;
        let (realized, unrealized) = state.pnl().map_err(ExecError::from)?;
        // Initial margin of the open positions at their marks (the
        // instrument's initial margin rate, 1 for cash equities).
        let mut margin = Decimal::ZERO;
        for p in &snap.positions {
            let rate = state
                .broker
                .instruments()
                .iter()
                .find(|i| i.id == p.symbol)
                .map_or(Decimal::ONE, |i| i.margin.initial);
            margin = p
                .value
                .abs()
                .checked_mul(rate)
                .and_then(|m| margin.checked_add(m))
                .ok_or_else(|| PaperError::Overflow {
                    what: "margin used",
                    symbol: p.symbol.clone(),
                })
                .map_err(ExecError::from)?;
        }
        // Equity and margin are both in range: their difference is at most
        // twice the range only when equity < 0 < margin, and then it is
        // negative and floored at 0.
        let buying_power = snap
            .equity
            .checked_sub(margin)
            .unwrap_or(Decimal::ZERO)
            .max(Decimal::ZERO);
        Ok(Response::new(GetAccountResponse {
            account_id: self.account_id.clone(),
            currency: self.currency.clone(),
            cash: Some(snap.cash.into()),
            equity: Some(snap.equity.into()),
            buying_power: Some(buying_power.into()),
            margin_used: Some(margin.into()),
            realized_pnl: Some(realized.into()),
            unrealized_pnl: Some(unrealized.into()),
            // Both are non-negative totals: their difference is in range.
            commissions: Some((snap.costs.commission - snap.costs.rebates).into()),
            borrow_costs: Some(snap.costs.borrow.into()),
            financing_costs: Some(snap.costs.financing.into()),
            updated_at: Some(ts_to_proto(snap.ts)),
        }))
    }

    async fn stream_fills(
        &self,
        request: Request<StreamFillsRequest>,
    ) -> Result<Response<Self::StreamFillsStream>, Status> {
        let r = request.into_inner();
        let since = r
            .since
            .as_ref()
            .map(|t| ts_from_proto("since", t))
            .transpose()?;
        if let Some(s) = since {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            if s < now.saturating_sub(MAX_SINCE_NS) {
                return Err(ExecError::invalid("since", "at most 7 days back").into());
            }
        }
        let keep = move |f: &v1::Fill| {
            (r.symbol.is_empty() || f.symbol == r.symbol)
                && (r.strategy_id.is_empty() || f.strategy_id == r.strategy_id)
        };
        // Subscribe first, then read the stored ones: no fill falls between.
        let mut live = self.engine.subscribe();
        let mut stored = Vec::new();
        let mut last_seq: Option<u64> = None;
        {
            let state = self.engine.lock().await;
            if let Some(last) = state.broker.fills().last() {
                last_seq = Some(last.seq);
            }
            if let Some(s) = since {
                for f in state.broker.fills().iter().filter(|f| f.ts >= s) {
                    let w = fill_to_proto(f, decision_of(&state, &f.client_order_id));
                    if keep(&w) {
                        stored.push(w);
                    }
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for f in stored {
                if tx
                    .send(Ok(StreamFillsResponse { fill: Some(f) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok((seq, f)) => {
                        // A fill republished after a redelivery is sent once.
                        if last_seq.is_some_and(|l| seq <= l) || !keep(&f) {
                            if last_seq.is_none_or(|l| seq > l) {
                                last_seq = Some(seq);
                            }
                            continue;
                        }
                        last_seq = Some(seq);
                        if tx
                            .send(Ok(StreamFillsResponse { fill: Some(f) }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "the stream fell {n} fills behind; reconnect with since"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
