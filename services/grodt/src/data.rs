//! `grodt data import|ls|show|fetch`: the market-data catalog from the command
//! line, over gRPC to a market-data service (`--addr`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use grodt_proto::v1;
use grodt_proto::v1::market_data_service_client::MarketDataServiceClient;
use tonic::transport::Channel;

/// Why a `grodt data` command failed; the message is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum DataCliError {
    /// A command-line argument is unusable.
    #[error("{arg}: {reason}")]
    Usage { arg: &'static str, reason: String },
    /// The service could not be reached.
    #[error("cannot reach market-data at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The service answered with an error.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    /// The import was rejected by validation (the report was printed).
    #[error("import rejected: {errors} error finding(s), nothing stored")]
    Rejected { errors: u32 },
}

/// Options of `grodt data import` (parsed by clap in `main`).
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Which column is what: `ts=timestamp,open=open,...`; `#N` is a 0-based index;
    /// unnamed fields read the column of their own name.
    #[arg(long)]
    pub mapping: Option<String>,
    /// Lines before the header to ignore (a banner).
    #[arg(long, default_value_t = 0)]
    pub skip_lines: u32,
    /// `,`, `;`, `|` or `tab`; detected when absent.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// The file has no header line.
    #[arg(long)]
    pub no_header: bool,
    /// iso8601, ymd-hm, mdy, epoch-s, epoch-ms, epoch-us, epoch-ns or a strftime pattern.
    #[arg(long)]
    pub time_format: Option<String>,
    /// Zone of timestamps without an offset (UTC, America/New_York, America/Chicago).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Where the data came from ([a-z0-9_-]).
    #[arg(long, default_value = "local")]
    pub source: String,
    /// Instrument symbol; guessed from `sym_tf_...csv` when absent.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Bar length (1m 5m 15m 1h 4h 1d 1w 1M); guessed from the file name when absent.
    #[arg(long)]
    pub timeframe: Option<String>,
    /// equity, etf, future, fx, crypto, perpetual or index (picks the gap
    /// calendar: the NYSE session for intraday equity and etf files). Default
    /// crypto with the binance and cryptodatadownload presets, else equity.
    #[arg(long)]
    pub asset_class: Option<String>,
    /// Stream the file to the server instead of passing its path.
    #[arg(long)]
    pub upload: bool,
    /// A known layout fills the mapping, header, skipped lines, time format and
    /// price divisor: lean, yahoo, yahoo-adjusted, cryptodatadownload, binance.
    /// --mapping, --time-format and --timezone still override it.
    #[arg(long)]
    pub preset: Option<String>,
}

impl ImportArgs {
    /// The options `grodt data import FILE` gets with no flag, for callers
    /// that build them in code (`grodt paper`, tests).
    pub fn of(file: PathBuf) -> Self {
        Self {
            file,
            mapping: None,
            skip_lines: 0,
            delimiter: None,
            no_header: false,
            time_format: None,
            timezone: None,
            source: "local".into(),
            symbol: None,
            timeframe: None,
            asset_class: None,
            upload: false,
            preset: None,
        }
    }
}

fn proto_column(c: &grodt_data::import::ColumnRef) -> v1::ColumnRef {
    use grodt_data::import::ColumnRef as C;
    v1::ColumnRef {
        column: Some(match c {
            C::Name(n) => v1::column_ref::Column::Name(n.clone()),
            C::Index(i) => v1::column_ref::Column::Index(u32::try_from(*i).unwrap_or(u32::MAX)),
        }),
    }
}

/// The wire options of a preset (grodt-data's layouts), read against the
/// file's first lines.
fn preset_csv(name: &str, file: &Path) -> Result<v1::CsvOptions, DataCliError> {
    use grodt_data::import::{Delimiter, Preset};
    use grodt_data::time::TimeFormat as T;
    use v1::TimestampFormat as F;
    let usage = |reason: String| DataCliError::Usage {
        arg: "--preset",
        reason,
    };
    let preset: Preset = name
        .parse()
        .map_err(|e: grodt_data::DataError| usage(e.to_string()))?;
    let text = std::fs::read(file).map_err(|e| usage(format!("{}: {e}", file.display())))?;
    let head = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    let lines: Vec<&str> = head.lines().take(3).collect();
    let o = preset.options(&lines);
    let m = &o.mapping;
    let (fmt, pattern) = match &o.time_format {
        T::Iso8601 => (F::Iso8601, String::new()),
        T::DateTimeMinutes => (F::YmdHm, String::new()),
        T::UsDate => (F::Mdy, String::new()),
        T::Pattern(p) => (F::Custom, p.clone()),
        T::EpochSeconds => (F::EpochSeconds, String::new()),
        T::EpochMillis => (F::EpochMillis, String::new()),
        T::EpochMicros => (F::EpochMicros, String::new()),
        T::EpochNanos => (F::EpochNanos, String::new()),
    };
    Ok(v1::CsvOptions {
        mapping: Some(v1::ColumnMapping {
            timestamp: Some(proto_column(&m.timestamp)),
            open: Some(proto_column(&m.open)),
            high: Some(proto_column(&m.high)),
            low: Some(proto_column(&m.low)),
            close: Some(proto_column(&m.close)),
            volume: Some(proto_column(&m.volume)),
        }),
        delimiter: match o.delimiter {
            Delimiter::Char(c) => char::from(c).to_string(),
            Delimiter::Auto => String::new(),
        },
        has_header: o.has_header,
        skip_lines: u32::try_from(o.skip_lines).unwrap_or(u32::MAX),
        timestamp_format: fmt as i32,
        timestamp_pattern: pattern,
        price_divisor: o.price_divisor,
        adjust_by: o.adjust_by.as_ref().map(proto_column),
        ..Default::default()
    })
}

async fn client(addr: &str) -> Result<MarketDataServiceClient<Channel>, DataCliError> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let connect = |reason: String| DataCliError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    let channel = Channel::from_shared(uri)
        .map_err(|e| connect(e.to_string()))?
        .connect()
        .await
        .map_err(|e| connect(e.to_string()))?;
    Ok(MarketDataServiceClient::new(channel))
}

/// Timeframe label (`1m 5m 15m 30m 1h 4h 1d 1w 1M`) to the wire enum.
pub fn parse_timeframe(label: &str) -> Option<v1::Timeframe> {
    use v1::Timeframe as T;
    Some(match label {
        "1m" => T::Minute1,
        "5m" => T::Minute5,
        "15m" => T::Minute15,
        "30m" => T::Minute30,
        "1h" => T::Hour1,
        "4h" => T::Hour4,
        "1d" => T::Day1,
        "1w" => T::Week1,
        "1M" => T::Month1,
        _ => return None,
    })
}

fn timeframe_label(tf: i32) -> &'static str {
    use v1::Timeframe as T;
    match T::try_from(tf).unwrap_or_default() {
        T::Minute1 => "1m",
        T::Minute5 => "5m",
        T::Minute15 => "15m",
        T::Minute30 => "30m",
        T::Hour1 => "1h",
        T::Hour4 => "4h",
        T::Day1 => "1d",
        T::Week1 => "1w",
        T::Month1 => "1M",
        T::Unspecified => "?",
    }
}

/// `ts=date,volume=volume_btc` -> a full mapping; unnamed fields keep their
/// own name (`open` reads column "open").
pub fn parse_mapping(text: Option<&str>) -> Result<v1::ColumnMapping, DataCliError> {
    let col = |v: &str| -> Result<Option<v1::ColumnRef>, DataCliError> {
        let column = match v.strip_prefix('#') {
            Some(n) => {
                v1::column_ref::Column::Index(n.parse().map_err(|_| DataCliError::Usage {
                    arg: "--mapping",
                    reason: format!("{v:?}: '#' must be followed by a column index"),
                })?)
            }
            None => v1::column_ref::Column::Name(v.to_owned()),
        };
        Ok(Some(v1::ColumnRef {
            column: Some(column),
        }))
    };
    let mut m = v1::ColumnMapping {
        timestamp: col("timestamp")?,
        open: col("open")?,
        high: col("high")?,
        low: col("low")?,
        close: col("close")?,
        volume: col("volume")?,
    };
    for pair in text.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| DataCliError::Usage {
            arg: "--mapping",
            reason: format!("{pair:?} is not field=column"),
        })?;
        if v.is_empty() {
            return Err(DataCliError::Usage {
                arg: "--mapping",
                reason: format!("{k}: empty column"),
            });
        }
        let slot = match k {
            "ts" | "time" | "timestamp" | "date" => &mut m.timestamp,
            "open" | "o" => &mut m.open,
            "high" | "h" => &mut m.high,
            "low" | "l" => &mut m.low,
            "close" | "c" => &mut m.close,
            "volume" | "vol" | "v" => &mut m.volume,
            other => {
                return Err(DataCliError::Usage {
                    arg: "--mapping",
                    reason: format!("unknown field {other:?} (ts, open, high, low, close, volume)"),
                });
            }
        };
        *slot = col(v)?;
    }
    Ok(m)
}

fn time_format(text: Option<&str>) -> (v1::TimestampFormat, String) {
    use v1::TimestampFormat as F;
    match text {
        None | Some("") | Some("auto") => (F::Unspecified, String::new()),
        Some("iso8601") => (F::Iso8601, String::new()),
        Some("ymd-hm") => (F::YmdHm, String::new()),
        Some("mdy") => (F::Mdy, String::new()),
        Some("epoch-s") => (F::EpochSeconds, String::new()),
        Some("epoch-ms") => (F::EpochMillis, String::new()),
        Some("epoch-us") => (F::EpochMicros, String::new()),
        Some("epoch-ns") => (F::EpochNanos, String::new()),
        Some(pattern) => (F::Custom, pattern.to_owned()),
    }
}

fn asset_class(text: &str) -> Result<v1::AssetClass, DataCliError> {
    use v1::AssetClass as A;
    Ok(match text {
        "equity" => A::Equity,
        "etf" => A::Etf,
        "future" => A::Future,
        "fx" => A::Fx,
        "crypto" => A::CryptoSpot,
        "perpetual" => A::CryptoPerpetual,
        "index" => A::Index,
        other => {
            return Err(DataCliError::Usage {
                arg: "--asset-class",
                reason: format!(
                    "{other:?} is not one of equity etf future fx crypto perpetual index"
                ),
            });
        }
    })
}

/// Symbol and timeframe guessed from names like `spy_1d_1998-2021.csv`.
fn guess_from_name(path: &Path) -> (Option<String>, Option<String>) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = stem.split('_');
    let symbol = parts
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_uppercase);
    let tf = parts
        .next()
        .filter(|t| parse_timeframe(t).is_some())
        .map(str::to_owned);
    (symbol, tf)
}

/// Builds the import spec of `args` (the path handling is the caller's).
pub fn import_spec(args: &ImportArgs) -> Result<v1::ImportSpec, DataCliError> {
    let (guess_symbol, guess_tf) = guess_from_name(&args.file);
    let symbol = args
        .symbol
        .clone()
        .or(guess_symbol)
        .ok_or_else(|| DataCliError::Usage {
            arg: "--symbol",
            reason: "required (cannot be guessed from the file name)".into(),
        })?;
    let tf_label = args
        .timeframe
        .clone()
        .or(guess_tf)
        .ok_or_else(|| DataCliError::Usage {
            arg: "--timeframe",
            reason: "required (cannot be guessed from the file name)".into(),
        })?;
    let tf = parse_timeframe(&tf_label).ok_or_else(|| DataCliError::Usage {
        arg: "--timeframe",
        reason: format!("{tf_label:?} is not one of 1m 5m 15m 30m 1h 4h 1d 1w 1M"),
    })?;
    let (fmt, pattern) = time_format(args.time_format.as_deref());
    let csv = match &args.preset {
        Some(p) => {
            let mut csv = preset_csv(p, &args.file)?;
            if args.mapping.is_some() {
                csv.mapping = Some(parse_mapping(args.mapping.as_deref())?);
            }
            if args.time_format.is_some() {
                (csv.timestamp_format, csv.timestamp_pattern) = (fmt as i32, pattern);
            }
            csv.source_timezone = args.timezone.clone().unwrap_or_default();
            csv
        }
        None => v1::CsvOptions {
            mapping: Some(parse_mapping(args.mapping.as_deref())?),
            delimiter: match args.delimiter.as_deref() {
                Some("tab" | "\\t") => "\t".into(),
                Some(d) => d.to_owned(),
                None => String::new(),
            },
            has_header: !args.no_header,
            skip_lines: args.skip_lines,
            timestamp_format: fmt as i32,
            timestamp_pattern: pattern,
            source_timezone: args.timezone.clone().unwrap_or_default(),
            ..Default::default()
        },
    };
    Ok(v1::ImportSpec {
        instrument: Some(v1::Instrument {
            symbol,
            venue: args.source.to_ascii_uppercase(),
            asset_class: asset_class(args.asset_class.as_deref().unwrap_or(
                match args.preset.as_deref() {
                    Some("binance" | "cryptodatadownload") => "crypto",
                    _ => "equity",
                },
            ))? as i32,
            price_precision: 4,
            quantity_step: Some(v1::Decimal { value: "1".into() }),
            min_quantity: Some(v1::Decimal { value: "1".into() }),
            quote_currency: "USD".into(),
            ..Default::default()
        }),
        timeframe: tf as i32,
        source: args.source.clone(),
        dataset_name: String::new(),
        csv: Some(csv),
        idempotent: false,
    })
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A dataset as a block of `key: value` lines.
pub fn render_dataset(d: &v1::Dataset) -> String {
    let mut out = String::new();
    let range = d.range.unwrap_or_default();
    let p = d.provenance.clone().unwrap_or_default();
    let symbol = d.instrument.as_ref().map_or("", |i| i.symbol.as_str());
    let _ = writeln!(out, "dataset    {}", d.dataset_id);
    let _ = writeln!(out, "name       {}", d.name);
    let _ = writeln!(out, "symbol     {symbol}");
    let _ = writeln!(out, "timeframe  {}", timeframe_label(d.timeframe));
    let _ = writeln!(out, "rows       {}", d.row_count);
    let _ = writeln!(
        out,
        "range      {} .. {}",
        time(&range.start),
        time(&range.end)
    );
    let _ = writeln!(out, "sha256     {}", d.content_sha256);
    let _ = writeln!(out, "source     {}", p.source);
    let _ = writeln!(
        out,
        "original   {} (sha256 {})",
        p.original_file, p.original_sha256
    );
    let _ = writeln!(out, "imported   {}", time(&p.imported_at));
    if !p.derived_from_dataset_id.is_empty() {
        let _ = writeln!(out, "derived    from {}", p.derived_from_dataset_id);
    }
    let _ = writeln!(out, "warnings   {}   gaps {}", d.warning_count, d.gap_count);
    out
}

/// A validation report as a summary line and a table of findings.
pub fn render_report(r: &v1::ValidationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "quality    read {}  imported {}  rejected {}  errors {}  warnings {}",
        r.rows_read, r.rows_imported, r.rows_rejected, r.error_count, r.warning_count
    );
    if r.findings.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:<30} {:>7}  LINES / MESSAGE",
        "SEVERITY", "CHECK", "ROWS"
    );
    for f in &r.findings {
        let sev = match v1::Severity::try_from(f.severity).unwrap_or_default() {
            v1::Severity::Error => "ERROR",
            v1::Severity::Warning => "WARNING",
            v1::Severity::Info => "INFO",
            v1::Severity::Unspecified => "-",
        };
        let mut lines: Vec<String> = f.lines.iter().take(8).map(u64::to_string).collect();
        if f.lines.len() > 8 {
            lines.push("...".into());
        }
        let _ = writeln!(
            out,
            "{sev:<8} {:<30} {:>7}  {}",
            f.check,
            f.row_count,
            lines.join(" ")
        );
        let _ = writeln!(out, "{:<48}{}", "", f.message);
    }
    out
}

/// `grodt data import`: prints the dataset and its report.
pub async fn import(addr: &str, args: &ImportArgs) -> Result<String, DataCliError> {
    let spec = import_spec(args)?;
    let path = std::path::absolute(&args.file).map_err(|e| DataCliError::Usage {
        arg: "FILE",
        reason: format!("{}: {e}", args.file.display()),
    })?;
    let mut c = client(addr).await?;
    let (dataset, report) = if args.upload {
        let bytes = std::fs::read(&path).map_err(|e| DataCliError::Usage {
            arg: "FILE",
            reason: format!("{}: {e}", path.display()),
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut msgs = vec![v1::UploadCsvRequest {
            part: Some(v1::upload_csv_request::Part::Header(v1::UploadCsvHeader {
                file_name: name,
                spec: Some(spec),
                sha256: String::new(),
            })),
        }];
        msgs.extend(bytes.chunks(1 << 20).map(|c| v1::UploadCsvRequest {
            part: Some(v1::upload_csv_request::Part::Chunk(c.to_vec())),
        }));
        let r = c.upload_csv(tokio_stream::iter(msgs)).await?.into_inner();
        (r.dataset, r.report)
    } else {
        let r = c
            .import_csv(v1::ImportCsvRequest {
                path: path.display().to_string(),
                spec: Some(spec),
            })
            .await?
            .into_inner();
        (r.dataset, r.report)
    };
    let report = report.unwrap_or_default();
    let mut out = String::new();
    if let Some(d) = &dataset {
        out.push_str(&render_dataset(d));
    }
    out.push_str(&render_report(&report));
    match dataset {
        Some(_) => Ok(out),
        None => {
            print!("{out}");
            Err(DataCliError::Rejected {
                errors: report.error_count,
            })
        }
    }
}

/// `grodt data ls`: every dataset, newest first.
pub async fn ls(addr: &str) -> Result<String, DataCliError> {
    let mut c = client(addr).await?;
    let mut out = format!(
        "{:<36}  {:<28} {:<4} {:>9}  {:<19}  {:<19}  {:>5}\n",
        "DATASET", "NAME", "TF", "ROWS", "FROM", "TO", "WARN"
    );
    let mut token = String::new();
    loop {
        let page = c
            .list_datasets(v1::ListDatasetsRequest {
                page: Some(v1::PageRequest {
                    page_size: 1000,
                    page_token: token,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        for d in &page.datasets {
            let range = d.range.unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<36}  {:<28} {:<4} {:>9}  {:<19}  {:<19}  {:>5}",
                d.dataset_id,
                d.name,
                timeframe_label(d.timeframe),
                d.row_count,
                time(&range.start),
                time(&range.end),
                d.warning_count
            );
        }
        token = page.page.unwrap_or_default().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// `grodt data show DATASET`: the dataset and its full quality report.
pub async fn show(addr: &str, dataset_id: &str) -> Result<String, DataCliError> {
    let mut c = client(addr).await?;
    let r = c
        .describe_dataset(v1::DescribeDatasetRequest {
            dataset_id: dataset_id.to_owned(),
        })
        .await?
        .into_inner();
    let mut out = r.dataset.as_ref().map(render_dataset).unwrap_or_default();
    out.push_str(&render_report(&r.report.unwrap_or_default()));
    Ok(out)
}

/// Options of `grodt data fetch` (parsed by clap in `main`).
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// binance or coinbase.
    pub venue: String,
    /// As the venue spells it: BTCUSDT (Binance), BTC-USD (Coinbase).
    pub symbol: String,
    /// 1m 5m 15m 1h 4h 1d 1w (Coinbase: 1m 5m 15m 1h 1d).
    pub timeframe: String,
    /// First bar wanted: 2024-01-01 or 2024-01-01T12:00:00Z (UTC).
    pub from: String,
    /// End, exclusive, same forms; later than now means up to the last closed bar.
    pub to: String,
}

/// `2024-01-01` (midnight UTC) or RFC 3339 to a timestamp; `None` for
/// anything else.
pub fn parse_instant(text: &str) -> Option<prost_types::Timestamp> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .ok()?;
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).ok()?,
    })
}

/// `2024-01-01` or RFC 3339 to a timestamp.
fn parse_when(arg: &'static str, text: &str) -> Result<prost_types::Timestamp, DataCliError> {
    parse_instant(text).ok_or_else(|| DataCliError::Usage {
        arg,
        reason: format!("{text:?} is neither YYYY-MM-DD nor RFC 3339 (2024-01-01T12:00:00Z)"),
    })
}

/// The request of `grodt data fetch`.
pub fn fetch_request(args: &FetchArgs) -> Result<v1::FetchBarsRequest, DataCliError> {
    let tf = parse_timeframe(&args.timeframe).ok_or_else(|| DataCliError::Usage {
        arg: "TIMEFRAME",
        reason: format!("{:?} is not one of 1m 5m 15m 1h 4h 1d 1w", args.timeframe),
    })?;
    Ok(v1::FetchBarsRequest {
        venue: args.venue.to_ascii_lowercase(),
        symbol: args.symbol.clone(),
        timeframe: tf as i32,
        from: Some(parse_when("FROM", &args.from)?),
        to: Some(parse_when("TO", &args.to)?),
    })
}

/// `grodt data fetch`: progress on stderr, the dataset at the end.
pub async fn fetch(addr: &str, args: &FetchArgs) -> Result<String, DataCliError> {
    let request = fetch_request(args)?;
    let mut c = client(addr).await?;
    let mut stream = c.fetch_bars(request).await?.into_inner();
    let mut out = String::new();
    while let Some(p) = stream.message().await? {
        if p.done {
            let _ = writeln!(
                out,
                "fetched    {} bars in {} requests ({} retried)",
                p.bars_fetched, p.requests, p.retried
            );
            match &p.dataset {
                Some(d) => out.push_str(&render_dataset(d)),
                None => out.push_str("nothing to fetch and no dataset\n"),
            }
        } else {
            eprintln!(
                "committed  {} rows (fetched {}), done to {}",
                p.rows,
                p.bars_fetched,
                time(&p.done_to)
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fill_the_wire_options() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../libs/data/tests/fixtures");
        let lean = preset_csv("lean", &fixtures.join("lean_spy_daily.csv")).expect("lean");
        assert_eq!(lean.price_divisor, 10_000);
        assert!(!lean.has_header);
        assert_eq!(lean.timestamp_pattern, "%Y%m%d %H:%M");
        let yahoo =
            preset_csv("yahoo-adjusted", &fixtures.join("yahoo_aapl_daily.csv")).expect("yahoo");
        assert_eq!(
            yahoo.adjust_by.and_then(|c| c.column),
            Some(v1::column_ref::Column::Name("Adj Close".into()))
        );
        let e = preset_csv("stooq", &fixtures.join("lean_spy_daily.csv")).unwrap_err();
        assert!(e.to_string().starts_with("--preset:"), "{e}");
    }

    #[test]
    fn crypto_presets_default_to_crypto_and_everything_else_to_equity() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../libs/data/tests/fixtures");
        let class = |file: &str, preset: Option<&str>, asset: Option<&str>| {
            let spec = import_spec(&ImportArgs {
                symbol: Some("X".into()),
                timeframe: Some("1m".into()),
                asset_class: asset.map(str::to_owned),
                preset: preset.map(str::to_owned),
                ..ImportArgs::of(fixtures.join(file))
            })
            .expect("spec");
            spec.instrument.expect("instrument").asset_class
        };
        // Any file: the class does not depend on its content.
        let file = "lean_spy_daily.csv";
        assert_eq!(
            class(file, Some("binance"), None),
            v1::AssetClass::CryptoSpot as i32
        );
        assert_eq!(
            class(file, Some("binance"), Some("perpetual")),
            v1::AssetClass::CryptoPerpetual as i32
        );
        assert_eq!(
            class(file, Some("lean"), None),
            v1::AssetClass::Equity as i32
        );
        assert_eq!(class(file, None, None), v1::AssetClass::Equity as i32);
    }

    #[test]
    fn mapping_defaults_to_own_names_and_takes_overrides() {
        let m = parse_mapping(Some("ts=date,volume=#6")).expect("valid");
        assert_eq!(
            m.timestamp.and_then(|c| c.column),
            Some(v1::column_ref::Column::Name("date".into()))
        );
        assert_eq!(
            m.volume.and_then(|c| c.column),
            Some(v1::column_ref::Column::Index(6))
        );
        assert_eq!(
            m.open.and_then(|c| c.column),
            Some(v1::column_ref::Column::Name("open".into()))
        );
        let e = parse_mapping(Some("price=close")).expect_err("unknown field");
        assert!(e.to_string().contains("price"), "{e}");
        assert!(parse_mapping(Some("open")).is_err());
    }

    #[test]
    fn fetch_arguments_are_checked() {
        let args = FetchArgs {
            venue: "Coinbase".into(),
            symbol: "BTC-USD".into(),
            timeframe: "1h".into(),
            from: "2019-01-01".into(),
            to: "2019-02-01T06:00:00Z".into(),
        };
        let r = fetch_request(&args).expect("valid");
        assert_eq!(r.venue, "coinbase");
        assert_eq!(r.from.map(|t| t.seconds), Some(1_546_300_800));
        assert_eq!(r.to.map(|t| t.seconds), Some(1_548_979_200 + 6 * 3600));
        let e = fetch_request(&FetchArgs {
            from: "01/01/2019".into(),
            ..args.clone()
        })
        .expect_err("bad date");
        assert!(e.to_string().starts_with("FROM:"), "{e}");
        assert!(
            fetch_request(&FetchArgs {
                timeframe: "2h".into(),
                ..args
            })
            .is_err()
        );
    }

    #[test]
    fn symbol_and_timeframe_are_guessed_from_the_file_name() {
        assert_eq!(
            guess_from_name(Path::new("/x/spy_1d_1998-2021.csv")),
            (Some("SPY".into()), Some("1d".into()))
        );
        assert_eq!(
            guess_from_name(Path::new("coinbase.csv")),
            (Some("COINBASE".into()), None)
        );
    }
}
