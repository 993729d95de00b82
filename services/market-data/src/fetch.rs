//! FetchBars: a venue's candles into the catalog through grodt-data's backfill, over
//! HTTPS with the venue's settings from `[market_data.venues.<venue>]`. The dataset's
//! instrument and name are staged beside each commit, as imports do.

use std::sync::Arc;
use std::time::Duration;

use grodt_data::catalog::Partitioning;
use grodt_data::meta::DatasetId;
use grodt_data::validate::ValidationOptions;
use grodt_data::venues::backfill::{BackfillRequest, backfill};
use grodt_data::venues::coinbase::CoinbaseClient;
use grodt_data::venues::rest::{RetryPolicy, TokioTimer};
use grodt_data::venues::tls::{HttpsTransport, client_config};
use grodt_data::venues::{CandleSource, FetchStats, Venue};
use grodt_dataset_meta::Extra;
use grodt_proto::v1;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use crate::config::VenueConfig;
use crate::convert;
use crate::error::{MdError, status};
use crate::grpc::{Shared, dataset_proto};

/// A venue's REST client from its configuration.
pub fn source(
    venue: Venue,
    cfg: &VenueConfig,
    seed: u64,
) -> Result<Box<dyn CandleSource>, MdError> {
    let tls = client_config(cfg.ca_file.as_deref())?;
    let transport = Arc::new(HttpsTransport::new(
        tls,
        Duration::from_millis(cfg.timeout_ms),
    ));
    let timer = Arc::new(TokioTimer::default());
    let retry = RetryPolicy {
        max_attempts: cfg.max_attempts,
        ..RetryPolicy::default()
    };
    let base = cfg
        .base_url
        .clone()
        .unwrap_or_else(|| venue.default_base_url().to_owned());
    Ok(match venue {
        Venue::Binance => Box::new(grodt_data::binance::BinanceClient::new(
            &base,
            grodt_data::binance::BinanceOptions {
                retry,
                ..Default::default()
            },
            seed,
            transport,
            timer,
        )?),
        Venue::Coinbase => Box::new(CoinbaseClient::new(&base, retry, seed, transport, timer)?),
    })
}

/// The quote currency of a venue symbol: after the dash (`BTC-USD`), else a known suffix.
fn quote_of(symbol: &str) -> String {
    if let Some((_, q)) = symbol.rsplit_once('-') {
        return q.to_owned();
    }
    [
        "USDT", "USDC", "FDUSD", "BUSD", "USD", "EUR", "BTC", "ETH", "BNB",
    ]
    .into_iter()
    .find(|q| symbol.len() > q.len() && symbol.ends_with(q))
    .unwrap_or("")
    .to_owned()
}

struct Plan {
    venue: Venue,
    request: BackfillRequest,
}

fn plan(
    req: v1::FetchBarsRequest,
    now_ns: i64,
    pages_per_commit: impl Fn(Venue) -> u32,
) -> Result<Plan, MdError> {
    let venue = Venue::parse(&req.venue).map_err(|e| MdError::invalid("venue", e.to_string()))?;
    if req.symbol.is_empty() {
        return Err(MdError::invalid("symbol", "required"));
    }
    let tf = convert::timeframe("timeframe", req.timeframe)?;
    let from = req
        .from
        .ok_or_else(|| MdError::invalid("from", "required"))?;
    let to = req.to.ok_or_else(|| MdError::invalid("to", "required"))?;
    let from_ms = convert::ts_from_proto("from", &from)? / 1_000_000;
    let to_ms = convert::ts_from_proto("to", &to)? / 1_000_000;
    if to_ms <= from_ms {
        return Err(MdError::invalid("to", "must be after from"));
    }
    grodt_data::venues::timeframe_ms(tf.label())
        .map_err(|e| MdError::invalid("timeframe", e.to_string()))?;
    let id = DatasetId::new(venue.name(), &req.symbol, tf.label())
        .map_err(|e| MdError::invalid("symbol", e.to_string()))?;
    let mut validation = ValidationOptions::new(now_ns);
    validation.timeframe_ns = tf.nanos();
    Ok(Plan {
        venue,
        request: BackfillRequest {
            id,
            from_ms,
            to_ms,
            pages_per_commit: pages_per_commit(venue) as usize,
            validation,
            partitioning: if tf.nanos().is_some_and(|n| n < 86_400_000_000_000) {
                Partitioning::Month
            } else {
                Partitioning::Year
            },
        },
    })
}

fn progress_msg(p: &grodt_data::venues::backfill::BackfillProgress) -> v1::FetchBarsResponse {
    let FetchStats {
        requests,
        rate_limited,
        transient_failures,
        ..
    } = p.stats;
    v1::FetchBarsResponse {
        bars_fetched: p.fetched,
        rows: p.rows,
        done_to: Some(convert::ts_to_proto(p.done_to_ms.saturating_mul(1_000_000))),
        requests,
        retried: rate_limited + transient_failures,
        dataset: None,
        done: false,
    }
}

/// Runs FetchBars, sending progress on `tx`; one fetch at a time per service (the
/// import lock's staged extras are keyed by dataset).
async fn run(
    shared: Arc<Shared>,
    plan: Plan,
    now_ns: i64,
    tx: mpsc::Sender<Result<v1::FetchBarsResponse, Status>>,
) -> Result<(), MdError> {
    let venues = shared.config.venues.clone();
    let src = source(plan.venue, venues.of(plan.venue), now_ns as u64)?;
    let id = plan.request.id.clone();
    let instrument = v1::Instrument {
        symbol: id.symbol.clone(),
        venue: plan.venue.name().to_ascii_uppercase(),
        asset_class: v1::AssetClass::CryptoSpot as i32,
        quote_currency: quote_of(&id.symbol),
        ..Default::default()
    };
    let meta = shared.meta.clone();
    let extra = Extra {
        name: id.to_string(),
        instrument_pb: instrument.encode_to_vec(),
        derived_from: None,
        original: None,
    };
    let hook_id = id.clone();
    let hook: grodt_data::venues::backfill::BeforeCommit = Arc::new(move |i: &DatasetId| {
        if *i == hook_id {
            meta.stage(i, extra.clone());
        }
    });
    let _one_at_a_time = shared.fetch_lock.lock().await;
    let progress_tx = tx.clone();
    let mut on_commit = |p: &grodt_data::venues::backfill::BackfillProgress| {
        shared.cache.invalidate(&id);
        // A client that went away does not stop the backfill: what is fetched is kept.
        let _ = progress_tx.try_send(Ok(progress_msg(p)));
    };
    let outcome = backfill(
        shared.catalog.clone(),
        src.as_ref(),
        &plan.request,
        Some(hook),
        &mut on_commit,
    )
    .await;
    shared.meta.unstage(&id);
    let outcome = outcome?;
    shared
        .metrics
        .rows_imported
        .inc_by(outcome.progress.fetched);
    let dataset = match outcome.record {
        Some(_) => shared.entry_by_key(&id).await?.map(|e| dataset_proto(&e)),
        None => None,
    };
    let mut last = progress_msg(&outcome.progress);
    last.dataset = dataset;
    last.done = true;
    let _ = tx.send(Ok(last)).await;
    Ok(())
}

/// The stream FetchBars answers with: progress, then the final message or the error.
/// A malformed request fails at once.
pub fn spawn(
    shared: Arc<Shared>,
    req: v1::FetchBarsRequest,
    now_ns: i64,
) -> Result<mpsc::Receiver<Result<v1::FetchBarsResponse, Status>>, MdError> {
    let venues = &shared.config.venues;
    let plan = plan(req, now_ns, |v| venues.of(v).pages_per_commit)?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(e) = run(shared, plan, now_ns, tx.clone()).await {
            tracing::warn!(error = %e, "fetch failed");
            let _ = tx.send(Err(status(&e))).await;
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_of_venue_symbols() {
        assert_eq!(quote_of("BTC-USD"), "USD");
        assert_eq!(quote_of("BTCUSDT"), "USDT");
        assert_eq!(quote_of("ETHBTC"), "BTC");
        assert_eq!(quote_of("XYZ"), "");
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ts = |s: i64| {
            Some(prost_types::Timestamp {
                seconds: s,
                nanos: 0,
            })
        };
        let ok = v1::FetchBarsRequest {
            venue: "coinbase".into(),
            symbol: "BTC-USD".into(),
            timeframe: v1::Timeframe::Hour1 as i32,
            from: ts(0),
            to: ts(3600),
        };
        let p = plan(ok.clone(), 0, |_| 3).unwrap();
        assert_eq!(
            p.request.id.to_string(),
            DatasetId::new("coinbase", "BTC-USD", "1h")
                .unwrap()
                .to_string()
        );
        assert_eq!(
            (
                p.request.from_ms,
                p.request.to_ms,
                p.request.pages_per_commit
            ),
            (0, 3_600_000, 3)
        );
        for (bad, field) in [
            (
                v1::FetchBarsRequest {
                    venue: "kraken".into(),
                    ..ok.clone()
                },
                "venue",
            ),
            (
                v1::FetchBarsRequest {
                    symbol: String::new(),
                    ..ok.clone()
                },
                "symbol",
            ),
            (
                v1::FetchBarsRequest {
                    to: ts(0),
                    ..ok.clone()
                },
                "to",
            ),
            (
                v1::FetchBarsRequest {
                    from: None,
                    ..ok.clone()
                },
                "from",
            ),
            (
                v1::FetchBarsRequest {
                    symbol: "BTC/USD".into(),
                    ..ok.clone()
                },
                "symbol",
            ),
        ] {
            let e = plan(bad, 0, |_| 1).err().expect("invalid");
            assert!(
                matches!(&e, MdError::Invalid { field: f, .. } if f == field),
                "{e}"
            );
        }
    }
}
