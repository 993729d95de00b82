//! Protobuf <-> domain, in one place: bars, timeframes, regimes, the
//! classifier's parameters and the states the RPCs and events carry.

use std::collections::HashMap;

use grodt_core::Bar;
use grodt_core::fixed::{MAX_PRECISION, parse_raw, written_precision};
use grodt_proto::v1;
use grodt_regimes::{Decision, Regime, RegimeConfig, RegimeError};

use crate::error::RegimeSvcError;

/// Most bars one Classify request may carry.
pub const MAX_CLASSIFY_BARS: usize = 100_000;

/// Nanoseconds since the epoch -> wire timestamp.
pub fn ts_to_proto(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

/// Wire timestamp -> nanoseconds since the epoch, naming `field` on error.
pub fn ts_from_proto(field: &str, ts: &prost_types::Timestamp) -> Result<i64, RegimeSvcError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(RegimeSvcError::invalid(
            field,
            format!("nanos {} out of range", ts.nanos),
        ));
    }
    ts.seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .ok_or_else(|| RegimeSvcError::invalid(field, "outside the nanosecond range"))
}

/// An optional wire time range -> the catalog's (half-open; absent ends open).
///
/// # Errors
/// A bad timestamp, or an end not after the start, named under `field`.
pub fn range_from_proto(
    field: &str,
    r: Option<&v1::TimeRange>,
) -> Result<grodt_data::TimeRange, RegimeSvcError> {
    let Some(r) = r else {
        return Ok(grodt_data::TimeRange::ALL);
    };
    let start = r
        .start
        .as_ref()
        .map(|t| ts_from_proto(&format!("{field}.start"), t))
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = r
        .end
        .as_ref()
        .map(|t| ts_from_proto(&format!("{field}.end"), t))
        .transpose()?
        .unwrap_or(i64::MAX);
    if end <= start {
        return Err(RegimeSvcError::invalid(
            format!("{field}.end"),
            "must be after start",
        ));
    }
    Ok(grodt_data::TimeRange { start, end })
}

/// The stored label of a timeframe (`1m`, ..., `1d`); `None` for UNSPECIFIED.
pub fn timeframe_label(tf: v1::Timeframe) -> Option<&'static str> {
    use v1::Timeframe as T;
    Some(match tf {
        T::Unspecified => return None,
        T::Minute1 => "1m",
        T::Minute5 => "5m",
        T::Minute15 => "15m",
        T::Minute30 => "30m",
        T::Hour1 => "1h",
        T::Hour4 => "4h",
        T::Day1 => "1d",
        T::Week1 => "1w",
        T::Month1 => "1mo",
    })
}

/// The timeframe of a stored label (UNSPECIFIED for an unknown one).
pub fn timeframe_from_label(label: &str) -> v1::Timeframe {
    use v1::Timeframe as T;
    [
        T::Minute1,
        T::Minute5,
        T::Minute15,
        T::Minute30,
        T::Hour1,
        T::Hour4,
        T::Day1,
        T::Week1,
        T::Month1,
    ]
    .into_iter()
    .find(|t| timeframe_label(*t) == Some(label))
    .unwrap_or(T::Unspecified)
}

/// A request's timeframe field: `None` for UNSPECIFIED, its label otherwise.
pub fn timeframe_field(field: &str, raw: i32) -> Result<Option<&'static str>, RegimeSvcError> {
    let tf = v1::Timeframe::try_from(raw)
        .map_err(|_| RegimeSvcError::invalid(field, format!("unknown value {raw}")))?;
    Ok(timeframe_label(tf))
}

/// Domain regime -> wire regime.
pub fn regime_to_proto(r: Regime) -> v1::Regime {
    match r {
        Regime::TrendingUp => v1::Regime::TrendingUp,
        Regime::TrendingDown => v1::Regime::TrendingDown,
        Regime::Ranging => v1::Regime::Ranging,
        Regime::Transition => v1::Regime::Transition,
        Regime::HighVolatility => v1::Regime::HighVolatility,
    }
}

/// A regime's stable name (as stored) -> regime.
pub fn regime_from_name(name: &str) -> Option<Regime> {
    Regime::ALL.into_iter().find(|r| r.name() == name)
}

fn rule_name(d: &Decision) -> String {
    // The serde name of the rule (`slope_up`, ...).
    serde_json::to_value(d.rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A decision as the wire state of (symbol, timeframe); `since_ns` is the
/// bar time the regime in force began.
pub fn decision_to_state(
    symbol: &str,
    timeframe: &str,
    d: &Decision,
    since_ns: i64,
) -> v1::RegimeState {
    let i = &d.inputs;
    let features: HashMap<String, f64> = [
        ("slope", i.slope),
        ("atr_percentile", i.atr_percentile),
        ("vol_ratio", i.vol_ratio),
        ("vol_short", i.vol_short),
        ("vol_long", i.vol_long),
        ("atr_rel", i.atr_rel),
        ("vwap", i.vwap),
        ("close", i.close.as_f64()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let t = &d.thresholds;
    let thresholds: HashMap<String, f64> = [
        ("atr_percentile_high", t.atr_percentile_high),
        ("vol_ratio_high", t.vol_ratio_high),
        ("slope_trend", t.slope_trend),
        ("slope_flat", t.slope_flat),
        ("vol_ratio_range", t.vol_ratio_range),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    v1::RegimeState {
        symbol: symbol.to_owned(),
        timeframe: timeframe_from_label(timeframe) as i32,
        regime: regime_to_proto(d.regime) as i32,
        confidence: 0.0,
        as_of: Some(ts_to_proto(d.ts)),
        since: Some(ts_to_proto(since_ns)),
        features,
        rule: rule_name(d),
        candidate: regime_to_proto(d.candidate) as i32,
        seq: d.seq,
        held: d.held,
        thresholds,
    }
}

fn usize_field(field: &str, v: u32) -> Result<Option<usize>, RegimeSvcError> {
    if v == 0 {
        return Ok(None);
    }
    usize::try_from(v)
        .map(Some)
        .map_err(|_| RegimeSvcError::invalid(field, "too large"))
}

/// The classifier config of `params`: unset (0) fields take the library's
/// defaults; the result is validated, errors name `params.<field>`.
pub fn params_to_config(params: Option<&v1::RegimeParams>) -> Result<RegimeConfig, RegimeSvcError> {
    let mut c = RegimeConfig::default();
    if let Some(p) = params {
        let set_u = |slot: &mut usize, name: &str, v: u32| -> Result<(), RegimeSvcError> {
            if let Some(v) = usize_field(&format!("params.{name}"), v)? {
                *slot = v;
            }
            Ok(())
        };
        set_u(&mut c.atr_period, "atr_period", p.atr_period)?;
        set_u(&mut c.vwap_window, "vwap_window", p.vwap_window)?;
        set_u(&mut c.slope_lag, "slope_lag", p.slope_lag)?;
        set_u(&mut c.atr_rank_window, "atr_rank_window", p.atr_rank_window)?;
        set_u(&mut c.vol_short, "vol_short", p.vol_short)?;
        set_u(&mut c.vol_long, "vol_long", p.vol_long)?;
        let set_f = |slot: &mut f64, v: f64| {
            if v != 0.0 {
                *slot = v;
            }
        };
        set_f(&mut c.atr_percentile_high, p.atr_percentile_high);
        set_f(&mut c.vol_ratio_high, p.vol_ratio_high);
        set_f(&mut c.slope_trend, p.slope_trend);
        set_f(&mut c.slope_flat, p.slope_flat);
        set_f(&mut c.vol_ratio_range, p.vol_ratio_range);
        if p.eval_minutes != 0 {
            c.eval_minutes = p.eval_minutes;
        }
        if p.confirm != 0 {
            c.confirm = p.confirm;
        }
        if p.min_dwell != 0 {
            c.min_dwell = p.min_dwell;
        }
    }
    c.validate().map_err(|e| config_error("params", &e))?;
    Ok(c)
}

/// A config error as INVALID_ARGUMENT naming `<prefix>.<field>`.
pub fn config_error(prefix: &str, e: &RegimeError) -> RegimeSvcError {
    match e {
        RegimeError::InvalidConfig { field, reason } => {
            RegimeSvcError::invalid(format!("{prefix}.{field}"), reason)
        }
        RegimeError::InvalidState(s) => RegimeSvcError::Corrupt(s.clone()),
    }
}

fn decimal_text<'a>(
    prefix: &str,
    name: &str,
    d: Option<&'a v1::Decimal>,
) -> Result<&'a str, RegimeSvcError> {
    d.map(|d| d.value.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RegimeSvcError::invalid(format!("{prefix}.{name}"), "required"))
}

/// The decimal places a bar's prices and volume are written with: (price, volume).
pub fn bar_scales(prefix: &str, b: &v1::Bar) -> Result<(u8, u8), RegimeSvcError> {
    let mut price = 0u8;
    for (name, d) in [
        ("open", b.open.as_ref()),
        ("high", b.high.as_ref()),
        ("low", b.low.as_ref()),
        ("close", b.close.as_ref()),
    ] {
        price = price.max(written_precision(decimal_text(prefix, name, d)?));
    }
    let volume = written_precision(decimal_text(prefix, "volume", b.volume.as_ref())?);
    Ok((price, volume))
}

/// A wire bar as a domain bar with prices at `price_scale` and volume at
/// `volume_scale` decimal places (exact: more places than that is refused),
/// checked as the proto says (prices > 0, low <= open, close <= high, volume >= 0).
pub fn bar_from_proto(
    prefix: &str,
    b: &v1::Bar,
    price_scale: u8,
    volume_scale: u8,
) -> Result<Bar, RegimeSvcError> {
    let raw = |name: &str, d: Option<&v1::Decimal>, scale: u8| -> Result<i64, RegimeSvcError> {
        let text = decimal_text(prefix, name, d)?;
        parse_raw(text, scale, "decimal")
            .map_err(|e| RegimeSvcError::invalid(format!("{prefix}.{name}"), e))
    };
    let ts = b
        .timestamp
        .as_ref()
        .ok_or_else(|| RegimeSvcError::invalid(format!("{prefix}.timestamp"), "required"))
        .and_then(|t| ts_from_proto(&format!("{prefix}.timestamp"), t))?;
    let bar = Bar {
        ts,
        open: raw("open", b.open.as_ref(), price_scale)?,
        high: raw("high", b.high.as_ref(), price_scale)?,
        low: raw("low", b.low.as_ref(), price_scale)?,
        close: raw("close", b.close.as_ref(), price_scale)?,
        volume: raw("volume", b.volume.as_ref(), volume_scale)?,
    };
    for (name, v) in [
        ("open", bar.open),
        ("high", bar.high),
        ("low", bar.low),
        ("close", bar.close),
    ] {
        if v <= 0 {
            return Err(RegimeSvcError::invalid(
                format!("{prefix}.{name}"),
                "must be positive",
            ));
        }
    }
    if bar.low > bar.open.min(bar.close) {
        return Err(RegimeSvcError::invalid(
            format!("{prefix}.low"),
            "above the open or the close",
        ));
    }
    if bar.high < bar.open.max(bar.close).max(bar.low) {
        return Err(RegimeSvcError::invalid(
            format!("{prefix}.high"),
            "below the open, the close or the low",
        ));
    }
    if bar.volume < 0 {
        return Err(RegimeSvcError::invalid(
            format!("{prefix}.volume"),
            "must not be negative",
        ));
    }
    Ok(bar)
}

/// The bars of a Classify request: one symbol and timeframe, 1..=100,000
/// bars, strictly increasing times. Prices (and volumes) are read at the
/// most decimal places any bar of the request is written with, so no digit
/// is lost. Returns the symbol, the timeframe, the price precision and the bars.
pub fn classify_bars(bars: &[v1::Bar]) -> Result<(String, i32, u8, Vec<Bar>), RegimeSvcError> {
    if bars.is_empty() || bars.len() > MAX_CLASSIFY_BARS {
        return Err(RegimeSvcError::invalid(
            "bars",
            format!("{} bars; 1..={MAX_CLASSIFY_BARS} are accepted", bars.len()),
        ));
    }
    let first = &bars[0];
    if first.symbol.is_empty() {
        return Err(RegimeSvcError::invalid("bars[0].symbol", "required"));
    }
    let (mut price_scale, mut volume_scale) = (0u8, 0u8);
    for (i, b) in bars.iter().enumerate() {
        let prefix = format!("bars[{i}]");
        if b.symbol != first.symbol {
            return Err(RegimeSvcError::invalid(
                format!("{prefix}.symbol"),
                format!("{:?} differs from bars[0]'s {:?}", b.symbol, first.symbol),
            ));
        }
        if b.timeframe != first.timeframe {
            return Err(RegimeSvcError::invalid(
                format!("{prefix}.timeframe"),
                "differs from bars[0]'s",
            ));
        }
        let (p, v) = bar_scales(&prefix, b)?;
        price_scale = price_scale.max(p);
        volume_scale = volume_scale.max(v);
    }
    debug_assert!(price_scale <= MAX_PRECISION);
    let mut out: Vec<Bar> = Vec::with_capacity(bars.len());
    for (i, b) in bars.iter().enumerate() {
        let bar = bar_from_proto(&format!("bars[{i}]"), b, price_scale, volume_scale)?;
        if let Some(prev) = out.last()
            && bar.ts <= prev.ts
        {
            return Err(RegimeSvcError::invalid(
                format!("bars[{i}].timestamp"),
                format!("not after bars[{}].timestamp", i - 1),
            ));
        }
        out.push(bar);
    }
    Ok((first.symbol.clone(), first.timeframe, price_scale, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(close: &str) -> v1::Bar {
        let d = |s: &str| Some(v1::Decimal { value: s.into() });
        v1::Bar {
            symbol: "SPY".into(),
            timeframe: v1::Timeframe::Day1 as i32,
            timestamp: Some(ts_to_proto(86_400_000_000_000)),
            open: d("10"),
            high: d("12.5"),
            low: d("9.25"),
            close: d(close),
            volume: d("100"),
        }
    }

    #[test]
    fn bars_are_read_at_their_largest_scale_exactly() {
        let mut b2 = bar("11.125");
        b2.timestamp = Some(ts_to_proto(2 * 86_400_000_000_000));
        let (_, _, p, bars) = classify_bars(&[bar("11"), b2]).unwrap();
        assert_eq!(p, 3);
        assert_eq!(bars[0].close, 11_000);
        assert_eq!(bars[1].close, 11_125);
        assert_eq!(bars[0].low, 9_250);
    }

    #[test]
    fn bad_bars_name_the_field() {
        let e = classify_bars(&[bar("11"), bar("11")]).unwrap_err();
        assert!(e.to_string().starts_with("bars[1].timestamp:"), "{e}");
        let e = classify_bars(&[bar("13")]).unwrap_err();
        assert!(e.to_string().starts_with("bars[0].high:"), "{e}");
        let e = classify_bars(&[]).unwrap_err();
        assert!(e.to_string().starts_with("bars:"), "{e}");
        let mut b = bar("11");
        b.volume = None;
        let e = classify_bars(&[b]).unwrap_err();
        assert!(e.to_string().starts_with("bars[0].volume:"), "{e}");
    }

    #[test]
    fn params_default_to_the_library_and_name_bad_fields() {
        assert_eq!(params_to_config(None).unwrap(), RegimeConfig::default());
        let p = v1::RegimeParams {
            vol_short: 50,
            vol_long: 40,
            ..Default::default()
        };
        let e = params_to_config(Some(&p)).unwrap_err();
        assert!(e.to_string().starts_with("params.vol_long:"), "{e}");
        let p = v1::RegimeParams {
            slope_trend: 0.15,
            slope_flat: 0.05,
            ..Default::default()
        };
        let c = params_to_config(Some(&p)).unwrap();
        assert_eq!(
            (c.slope_trend, c.slope_flat, c.vwap_window),
            (0.15, 0.05, 20)
        );
    }

    #[test]
    fn timeframe_labels_round_trip() {
        for tf in [
            v1::Timeframe::Minute1,
            v1::Timeframe::Day1,
            v1::Timeframe::Month1,
        ] {
            assert_eq!(timeframe_from_label(timeframe_label(tf).unwrap()), tf);
        }
    }
}
