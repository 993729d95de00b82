//! Protobuf <-> domain conversions. Every `TryFrom` destructures the whole
//! message, so a new proto field fails the build until it is handled here;
//! errors name the field at fault (`spec.csv.mapping.open`).

use grodt_data::aggregate::{Alignment, Timeframe};
use grodt_data::calendar::{BarLabel, Calendar, SessionCalendar};
use grodt_data::catalog::TimeRange;
use grodt_data::fixed::format_fixed;
use grodt_data::import::{ColumnMapping, ColumnRef, CsvOptions, Delimiter, MissingPolicy, Scale};
use grodt_data::time::{TimeFormat, TimestampNs, UsZone, Zone};
use grodt_data::validate::{Finding, FindingCode, QualityReport, Severity};
use grodt_data::{Bars, DatasetId};
use grodt_proto::v1;

use crate::error::MdError;

/// Server default of `outlier_z_threshold` (the contract says 10).
pub const DEFAULT_OUTLIER_Z: f64 = 10.0;
/// At most this many line numbers per finding on the wire.
const MAX_LINES: usize = 100;

fn invalid(field: &str, reason: impl Into<String>) -> MdError {
    MdError::invalid(field, reason)
}

/// Proto timeframe -> catalog timeframe.
pub fn timeframe(field: &str, tf: i32) -> Result<Timeframe, MdError> {
    use v1::Timeframe as P;
    match P::try_from(tf) {
        Ok(P::Minute1) => Ok(Timeframe::M1),
        Ok(P::Minute5) => Ok(Timeframe::M5),
        Ok(P::Minute15) => Ok(Timeframe::M15),
        Ok(P::Hour1) => Ok(Timeframe::H1),
        Ok(P::Hour4) => Ok(Timeframe::H4),
        Ok(P::Day1) => Ok(Timeframe::D1),
        Ok(P::Week1) => Ok(Timeframe::W1),
        Ok(P::Month1) => Ok(Timeframe::Mo1),
        Ok(P::Minute30) => Err(invalid(
            field,
            "TIMEFRAME_MINUTE_30 is not a catalog timeframe",
        )),
        Ok(P::Unspecified) => Err(invalid(field, "required")),
        Err(_) => Err(invalid(field, format!("unknown value {tf}"))),
    }
}

/// Catalog timeframe -> proto timeframe.
pub fn timeframe_to_proto(tf: Timeframe) -> v1::Timeframe {
    use v1::Timeframe as P;
    match tf {
        Timeframe::M1 => P::Minute1,
        Timeframe::M5 => P::Minute5,
        Timeframe::M15 => P::Minute15,
        Timeframe::H1 => P::Hour1,
        Timeframe::H4 => P::Hour4,
        Timeframe::D1 => P::Day1,
        Timeframe::W1 => P::Week1,
        Timeframe::Mo1 => P::Month1,
    }
}

/// Rank of a timeframe, to check "coarser than".
pub fn rank(tf: Timeframe) -> usize {
    Timeframe::ALL.iter().position(|t| *t == tf).unwrap_or(0)
}

pub fn ts_to_proto(ns: TimestampNs) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

pub fn ts_from_proto(field: &str, ts: &prost_types::Timestamp) -> Result<TimestampNs, MdError> {
    let prost_types::Timestamp { seconds, nanos } = *ts;
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(invalid(field, format!("nanos {nanos} out of range")));
    }
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(nanos)))
        .ok_or_else(|| invalid(field, "out of the representable range (1677..2262)"))
}

/// Optional proto range -> catalog range (absent bounds are open).
pub fn range(field: &str, r: Option<v1::TimeRange>) -> Result<TimeRange, MdError> {
    let Some(v1::TimeRange { start, end }) = r else {
        return Ok(TimeRange::ALL);
    };
    let start = match start {
        Some(t) => ts_from_proto(&format!("{field}.start"), &t)?,
        None => i64::MIN,
    };
    let end = match end {
        Some(t) => ts_from_proto(&format!("{field}.end"), &t)?,
        None => i64::MAX,
    };
    if end <= start {
        return Err(invalid(&format!("{field}.end"), "must be after start"));
    }
    Ok(TimeRange { start, end })
}

fn column(field: &str, c: Option<v1::ColumnRef>) -> Result<ColumnRef, MdError> {
    let v1::ColumnRef { column } = c.ok_or_else(|| invalid(field, "required"))?;
    match column {
        Some(v1::column_ref::Column::Name(n)) if n.is_empty() => {
            Err(invalid(field, "name must not be empty"))
        }
        Some(v1::column_ref::Column::Name(n)) => Ok(ColumnRef::Name(n)),
        Some(v1::column_ref::Column::Index(i)) => Ok(ColumnRef::Index(i as usize)),
        None => Err(invalid(field, "one of name or index is required")),
    }
}

fn mapping(field: &str, m: Option<v1::ColumnMapping>) -> Result<ColumnMapping, MdError> {
    let v1::ColumnMapping {
        timestamp,
        open,
        high,
        low,
        close,
        volume,
    } = m.ok_or_else(|| invalid(field, "required"))?;
    Ok(ColumnMapping {
        timestamp: column(&format!("{field}.timestamp"), timestamp)?,
        open: column(&format!("{field}.open"), open)?,
        high: column(&format!("{field}.high"), high)?,
        low: column(&format!("{field}.low"), low)?,
        close: column(&format!("{field}.close"), close)?,
        volume: column(&format!("{field}.volume"), volume)?,
    })
}

/// A zone the catalog can convert from: UTC, a fixed offset (`+02:00`) or any
/// IANA name (chrono-tz). The two US names keep the built-in rule that earlier
/// datasets were imported with (it agrees with the tz database since 1987).
pub fn zone(field: &str, name: &str) -> Result<Zone, MdError> {
    match name {
        "America/New_York" | "US/Eastern" => Ok(Zone::Us(UsZone::Eastern)),
        "America/Chicago" | "US/Central" => Ok(Zone::Us(UsZone::Central)),
        other => other
            .parse()
            .map_err(|e: grodt_data::time::TimeError| invalid(field, e.0)),
    }
}

/// What an import needs besides the file.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub id: DatasetId,
    pub timeframe: Timeframe,
    pub instrument: v1::Instrument,
    pub name: String,
    pub csv: CsvOptions,
    pub outlier_z: f64,
    pub calendar: Calendar,
    pub label: BarLabel,
    pub gap_tolerance_bars: u64,
    pub idempotent: bool,
}

/// Validates an `ImportSpec`; `field` is its path in the request (`spec`).
pub fn import_spec(field: &str, spec: Option<v1::ImportSpec>) -> Result<ImportSpec, MdError> {
    let v1::ImportSpec {
        instrument,
        timeframe: tf,
        source,
        dataset_name,
        csv,
        idempotent,
    } = spec.ok_or_else(|| invalid(field, "required"))?;
    let instrument =
        instrument.ok_or_else(|| invalid(&format!("{field}.instrument"), "required"))?;
    let tf = timeframe(&format!("{field}.timeframe"), tf)?;
    if source.is_empty()
        || source.len() > 64
        || !source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            &format!("{field}.source"),
            format!("{source:?} must be 1..64 chars of [a-z0-9_-]"),
        ));
    }
    if instrument.symbol.is_empty() {
        return Err(invalid(&format!("{field}.instrument.symbol"), "required"));
    }
    let id = DatasetId::new(&source, &instrument.symbol, tf.label())
        .map_err(|e| invalid(&format!("{field}.instrument.symbol"), e.to_string()))?;
    if dataset_name.len() > 128 {
        return Err(invalid(
            &format!("{field}.dataset_name"),
            "at most 128 chars",
        ));
    }
    let name = if dataset_name.is_empty() {
        id.to_string()
    } else {
        dataset_name
    };
    let asset = v1::AssetClass::try_from(instrument.asset_class).unwrap_or_default();
    let csv_field = format!("{field}.csv");
    let v1::CsvOptions {
        mapping: map,
        delimiter,
        has_header,
        skip_lines,
        timestamp_format,
        timestamp_pattern,
        source_timezone,
        missing_data,
        outlier_z_threshold,
        calendar,
        price_divisor,
        adjust_by,
    } = csv.ok_or_else(|| invalid(&csv_field, "required"))?;
    let price_divisor = price_divisor.max(1);
    if !(0..=18u32).any(|e| 10u64.checked_pow(e) == Some(price_divisor)) {
        return Err(invalid(
            &format!("{csv_field}.price_divisor"),
            format!("{price_divisor} is not a power of ten (1, 10, 100, ...)"),
        ));
    }
    let adjust_by = match adjust_by {
        None => None,
        Some(c) => Some(column(&format!("{csv_field}.adjust_by"), Some(c))?),
    };
    let mapping = mapping(&format!("{csv_field}.mapping"), map)?;
    let delimiter = match delimiter.as_str() {
        "" => Delimiter::Auto,
        "," | "\t" | ";" | "|" => Delimiter::Char(delimiter.as_bytes()[0]),
        other => {
            return Err(invalid(
                &format!("{csv_field}.delimiter"),
                format!("{other:?} is not one of \",\" \"\\t\" \";\" \"|\""),
            ));
        }
    };
    if skip_lines > 1000 {
        return Err(invalid(&format!("{csv_field}.skip_lines"), "at most 1000"));
    }
    use v1::TimestampFormat as F;
    let fmt = F::try_from(timestamp_format).map_err(|_| {
        invalid(
            &format!("{csv_field}.timestamp_format"),
            format!("unknown value {timestamp_format}"),
        )
    })?;
    if (fmt == F::Custom) == timestamp_pattern.is_empty() {
        return Err(invalid(
            &format!("{csv_field}.timestamp_pattern"),
            "required with TIMESTAMP_FORMAT_CUSTOM and forbidden otherwise",
        ));
    }
    let time_format = match fmt {
        // ISO 8601 reading also takes "YYYY-MM-DD HH:MM[:SS]" and bare dates.
        F::Unspecified | F::Iso8601 => TimeFormat::Iso8601,
        F::YmdHm => TimeFormat::DateTimeMinutes,
        F::Mdy => TimeFormat::UsDate,
        F::EpochSeconds => TimeFormat::EpochSeconds,
        F::EpochMillis => TimeFormat::EpochMillis,
        F::EpochMicros => TimeFormat::EpochMicros,
        F::EpochNanos => TimeFormat::EpochNanos,
        F::Custom => TimeFormat::Pattern(timestamp_pattern),
    };
    let zone = zone(&format!("{csv_field}.source_timezone"), &source_timezone)?;
    use v1::MissingDataPolicy as M;
    let missing = match M::try_from(missing_data) {
        Ok(M::Unspecified | M::Fail) => MissingPolicy::Fail,
        Ok(M::Skip) => MissingPolicy::Skip,
        Ok(M::ForwardFill) => MissingPolicy::ForwardFill,
        Err(_) => {
            return Err(invalid(
                &format!("{csv_field}.missing_data"),
                format!("unknown value {missing_data}"),
            ));
        }
    };
    if !(outlier_z_threshold.is_finite() && outlier_z_threshold >= 0.0) {
        return Err(invalid(
            &format!("{csv_field}.outlier_z_threshold"),
            "must be a finite number >= 0",
        ));
    }
    let outlier_z = if outlier_z_threshold == 0.0 {
        DEFAULT_OUTLIER_Z
    } else {
        outlier_z_threshold
    };
    use v1::Calendar as C;
    let crypto = matches!(
        asset,
        v1::AssetClass::CryptoSpot | v1::AssetClass::CryptoPerpetual
    );
    let futures_or_fx = matches!(asset, v1::AssetClass::Future | v1::AssetClass::Fx);
    let session = || {
        if tf == Timeframe::D1 && !futures_or_fx {
            // Daily exchange bars: weekdays less the NYSE's holidays and
            // closures; a missing trading day is a gap.
            (Calendar::UsEquityDaily, BarLabel::Open, 0)
        } else if futures_or_fx {
            // Equity index and rates futures halt early on CME's early-close
            // days; FX and other roots keep the FX hours.
            let sessions = if asset == v1::AssetClass::Future {
                SessionCalendar::cme_globex_for(&instrument.symbol)
            } else {
                SessionCalendar::cme_globex_fx()
            };
            (Calendar::Sessions(sessions), BarLabel::Open, 0)
        } else if matches!(asset, v1::AssetClass::Equity | v1::AssetClass::Etf) {
            // Intraday US equities: the NYSE's regular session, holidays and
            // early closes; pre- and post-market bars are only warned about.
            (
                Calendar::Sessions(SessionCalendar::nyse()),
                BarLabel::Open,
                0,
            )
        } else {
            // No intraday session calendar for indexes, options or an
            // unspecified class: no gap check rather than a wrong one
            // (every hole tolerated).
            (Calendar::AlwaysOpen, BarLabel::Open, u64::MAX)
        }
    };
    let (calendar, label, gap_tolerance_bars) = match C::try_from(calendar) {
        Ok(C::Unspecified) if crypto => (Calendar::AlwaysOpen, BarLabel::Open, 0),
        Ok(C::Unspecified | C::ExchangeSession) => session(),
        Ok(C::AlwaysOpen) => (Calendar::AlwaysOpen, BarLabel::Open, 0),
        // No gap check: every hole is tolerated.
        Ok(C::None) => (Calendar::AlwaysOpen, BarLabel::Open, u64::MAX),
        Err(_) => {
            return Err(invalid(
                &format!("{csv_field}.calendar"),
                format!("unknown value {calendar}"),
            ));
        }
    };
    let price_precision = instrument.price_precision;
    if price_precision > 9 {
        return Err(invalid(
            &format!("{field}.instrument.price_precision"),
            "must be 0..9",
        ));
    }
    Ok(ImportSpec {
        id,
        timeframe: tf,
        instrument,
        name,
        csv: CsvOptions {
            mapping,
            delimiter,
            has_header,
            skip_lines: skip_lines as usize,
            time_format,
            zone,
            // Exact as written: the scale comes from the data, so every digit survives.
            price_scale: Scale::FromData,
            volume_scale: Scale::FromData,
            missing,
            price_divisor,
            adjust_by,
        },
        outlier_z,
        calendar,
        label,
        gap_tolerance_bars,
        idempotent,
    })
}

/// Stable check id of a finding code (the contract's `check` field).
pub fn check_id(code: FindingCode) -> &'static str {
    match code {
        FindingCode::FieldCount => "schema.field_count",
        FindingCode::Unparsable => "schema.unparsable",
        FindingCode::Missing => "schema.missing",
        FindingCode::MissingSkipped => "schema.missing_skipped",
        FindingCode::MissingFilled => "schema.missing_filled",
        FindingCode::HighBelow => "ohlc.high_below",
        FindingCode::LowAbove => "ohlc.low_above",
        FindingCode::NegativeVolume => "ohlc.negative_volume",
        FindingCode::ReturnOutlier => "outlier.return_z",
        FindingCode::PriceScaleJump => "outlier.price_scale_jump",
        FindingCode::Unsorted => "temporal.unsorted",
        FindingCode::DuplicateTimestamp => "temporal.duplicate_timestamp",
        FindingCode::DuplicateBars => "temporal.duplicate_row",
        FindingCode::ZeroVolume => "temporal.zero_volume",
        FindingCode::FutureTimestamp => "temporal.future_timestamp",
        FindingCode::Gap => "temporal.gap",
        FindingCode::OutsideSession => "temporal.outside_session",
    }
}

fn finding(f: &Finding) -> v1::ValidationFinding {
    let Finding {
        layer: _,
        severity,
        code,
        message,
        rows,
    } = f;
    v1::ValidationFinding {
        severity: match severity {
            Severity::Warning => v1::Severity::Warning,
            Severity::Error => v1::Severity::Error,
        } as i32,
        check: check_id(*code).to_owned(),
        message: message.clone(),
        lines: rows.iter().take(MAX_LINES).copied().collect(),
        row_count: rows.len() as u64,
        first_timestamp: None,
    }
}

/// The wire report of a quality report.
pub fn report(r: &QualityReport) -> v1::ValidationReport {
    let s = &r.stats;
    let errors = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = r.findings.len() - errors;
    let rejected = s.lines_read.saturating_sub(s.rows_imported);
    v1::ValidationReport {
        rows_read: s.lines_read,
        rows_imported: if errors > 0 { 0 } else { s.rows_imported },
        rows_rejected: if errors > 0 { s.lines_read } else { rejected },
        error_count: errors as u32,
        warning_count: warnings as u32,
        findings: r.findings.iter().map(finding).collect(),
    }
}

/// Bar `i` of `bars` on the wire.
pub fn bar(bars: &Bars, i: usize, symbol: &str, tf: v1::Timeframe) -> v1::Bar {
    let (ps, vs) = (bars.price_scale, bars.volume_scale);
    let dec = |v: i64, s: u8| {
        Some(v1::Decimal {
            value: format_fixed(v, s),
        })
    };
    v1::Bar {
        symbol: symbol.to_owned(),
        timeframe: tf as i32,
        timestamp: Some(ts_to_proto(bars.ts[i])),
        open: dec(bars.open[i], ps),
        high: dec(bars.high[i], ps),
        low: dec(bars.low[i], ps),
        close: dec(bars.close[i], ps),
        volume: dec(bars.volume[i], vs),
    }
}

/// Proto alignment -> catalog alignment.
pub fn alignment(field: &str, a: i32, tf_of_dataset: &DatasetId) -> Result<Alignment, MdError> {
    use v1::SessionAlignment as A;
    match A::try_from(a) {
        Ok(A::Unspecified | A::Utc) => Ok(Alignment::Utc),
        Ok(A::ExchangeSession) => Err(MdError::Precondition(format!(
            "{field}: SESSION_ALIGNMENT_EXCHANGE_SESSION needs the venue's session, \
             which dataset {tf_of_dataset} does not record"
        ))),
        Err(_) => Err(invalid(field, format!("unknown value {a}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Option<v1::ColumnRef> {
        Some(v1::ColumnRef {
            column: Some(v1::column_ref::Column::Name(name.into())),
        })
    }

    fn spec() -> v1::ImportSpec {
        v1::ImportSpec {
            instrument: Some(v1::Instrument {
                symbol: "SPY".into(),
                venue: "ARCA".into(),
                asset_class: v1::AssetClass::Etf as i32,
                price_precision: 2,
                ..Default::default()
            }),
            timeframe: v1::Timeframe::Day1 as i32,
            source: "quantconnect".into(),
            dataset_name: String::new(),
            csv: Some(v1::CsvOptions {
                mapping: Some(v1::ColumnMapping {
                    timestamp: col("timestamp"),
                    open: col("open"),
                    high: col("high"),
                    low: col("low"),
                    close: col("close"),
                    volume: col("volume"),
                }),
                has_header: true,
                ..Default::default()
            }),
            idempotent: false,
        }
    }

    #[test]
    fn intraday_imports_get_their_exchange_s_session_calendar() {
        let calendar_of = |symbol: &str, asset: v1::AssetClass| {
            let mut sp = spec();
            let inst = sp.instrument.as_mut().unwrap();
            inst.symbol = symbol.into();
            inst.asset_class = asset as i32;
            sp.timeframe = v1::Timeframe::Minute1 as i32;
            import_spec("spec", Some(sp)).expect("valid").calendar
        };
        let equity = Calendar::Sessions(SessionCalendar::cme_globex_equity());
        let fx = Calendar::Sessions(SessionCalendar::cme_globex_fx());
        assert_eq!(calendar_of("ESZ4", v1::AssetClass::Future), equity);
        assert_eq!(calendar_of("ZN", v1::AssetClass::Future), equity);
        assert_eq!(calendar_of("6E", v1::AssetClass::Future), fx);
        assert_eq!(calendar_of("CL", v1::AssetClass::Future), fx);
        // Spot FX keeps the FX hours whatever its symbol.
        assert_eq!(calendar_of("ES", v1::AssetClass::Fx), fx);
        // Intraday stocks and ETFs keep the NYSE session; other classes
        // get no gap check (an unknown session is not guessed).
        let nyse = Calendar::Sessions(SessionCalendar::nyse());
        assert_eq!(calendar_of("SPY", v1::AssetClass::Etf), nyse);
        assert_eq!(calendar_of("AAPL", v1::AssetClass::Equity), nyse);
        assert_eq!(
            calendar_of("SPX", v1::AssetClass::Index),
            Calendar::AlwaysOpen
        );
    }

    #[test]
    fn a_complete_spec_converts() {
        let s = import_spec("spec", Some(spec())).expect("valid");
        assert_eq!(s.id.to_string(), "quantconnect/SPY/1d");
        assert_eq!(s.name, "quantconnect/SPY/1d");
        assert_eq!(s.outlier_z, DEFAULT_OUTLIER_Z);
        assert_eq!(s.calendar, Calendar::UsEquityDaily);
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = spec();
        if let Some(m) = s.csv.as_mut().and_then(|c| c.mapping.as_mut()) {
            m.open = None;
        }
        let e = import_spec("spec", Some(s)).expect_err("open missing");
        assert!(e.to_string().contains("spec.csv.mapping.open"), "{e}");
        let mut s = spec();
        s.timeframe = 0;
        let e = import_spec("spec", Some(s)).expect_err("timeframe missing");
        assert!(e.to_string().contains("spec.timeframe"), "{e}");
        let mut s = spec();
        if let Some(c) = s.csv.as_mut() {
            c.delimiter = "x".into();
        }
        let e = import_spec("spec", Some(s)).expect_err("bad delimiter");
        assert!(e.to_string().contains("spec.csv.delimiter"), "{e}");
        let mut s = spec();
        if let Some(c) = s.csv.as_mut() {
            c.timestamp_format = v1::TimestampFormat::Custom as i32;
        }
        let e = import_spec("spec", Some(s)).expect_err("pattern missing");
        assert!(e.to_string().contains("spec.csv.timestamp_pattern"), "{e}");
    }

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for ns in [0, 1, -1, 915_148_800_000_000_001, -86_400_000_000_123] {
            assert_eq!(ts_from_proto("t", &ts_to_proto(ns)).expect("fits"), ns);
        }
    }

    #[test]
    fn ranges_reject_end_before_start() {
        let r = v1::TimeRange {
            start: Some(ts_to_proto(10)),
            end: Some(ts_to_proto(5)),
        };
        let e = range("range", Some(r)).expect_err("inverted");
        assert!(e.to_string().contains("range.end"), "{e}");
        assert_eq!(range("range", None).expect("open"), TimeRange::ALL);
    }
}
