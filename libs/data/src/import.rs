//! Reading a CSV file into raw rows: schema mapping, delimiter detection, header,
//! skipped leading lines, exact decimal parsing, timestamps converted to UTC.
//! Nothing here judges the data; `validate` does.

use std::path::Path;

use grodt_core::csv_reader;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::fixed::{FixedError, MAX_SCALE};
use crate::time::{TimeFormat, TimestampNs, Zone, parse_timestamp};
use crate::validate::{Finding, FindingCode, Layer, Severity};

/// A column of the source file, by header name (case-insensitive) or 0-based index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnRef {
    Name(String),
    Index(usize),
}

impl From<&str> for ColumnRef {
    fn from(s: &str) -> Self {
        ColumnRef::Name(s.to_owned())
    }
}

impl From<usize> for ColumnRef {
    fn from(i: usize) -> Self {
        ColumnRef::Index(i)
    }
}

/// Which source column holds which field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMapping {
    pub timestamp: ColumnRef,
    pub open: ColumnRef,
    pub high: ColumnRef,
    pub low: ColumnRef,
    pub close: ColumnRef,
    pub volume: ColumnRef,
}

impl Default for ColumnMapping {
    /// `timestamp,open,high,low,close,volume` by name.
    fn default() -> Self {
        Self {
            timestamp: "timestamp".into(),
            open: "open".into(),
            high: "high".into(),
            low: "low".into(),
            close: "close".into(),
            volume: "volume".into(),
        }
    }
}

/// Field separator of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delimiter {
    /// Chosen from the first line read: the most frequent of `,` `\t` `;` `|` outside quotes.
    Auto,
    Char(u8),
}

/// Number of decimals of the fixed-point integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scale {
    /// The largest number of significant decimals found in the column(s); recorded with the dataset.
    FromData,
    /// Exactly this many decimals; a value with more significant decimals is an error.
    Fixed(u8),
}

/// What to do with an empty or `NaN`/`null` cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingPolicy {
    /// The row is an error: the import stops.
    Fail,
    /// The row is dropped (warning).
    Skip,
    /// Prices are taken from the previous bar in time (its close for open/high/low/close),
    /// volume becomes 0 (warning). A missing timestamp is an error under every policy but `Skip`.
    ForwardFill,
}

/// How to read one CSV file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvOptions {
    pub mapping: ColumnMapping,
    pub delimiter: Delimiter,
    pub has_header: bool,
    /// Lines before the header (or the first row), e.g. a banner.
    pub skip_lines: usize,
    pub time_format: TimeFormat,
    /// Zone of timestamps written without an offset.
    pub zone: Zone,
    pub price_scale: Scale,
    pub volume_scale: Scale,
    pub missing: MissingPolicy,
    /// Prices in the file are integers times this power of ten (QuantConnect/Lean
    /// files: 10,000); the shift is exact. 1 reads them as written.
    #[serde(default = "one")]
    pub price_divisor: u64,
    /// Adjusts every row by `adjusted close / close` of this column (Yahoo's
    /// "Adj Close"): open, high, low and close multiplied by the factor, volume
    /// divided by it, each rounded half-even at its scale. `None` imports the
    /// prices as traded and ignores the column.
    #[serde(default)]
    pub adjust_by: Option<ColumnRef>,
}

fn one() -> u64 {
    1
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            mapping: ColumnMapping::default(),
            delimiter: Delimiter::Auto,
            has_header: true,
            skip_lines: 0,
            time_format: TimeFormat::Iso8601,
            zone: Zone::UTC,
            price_scale: Scale::FromData,
            volume_scale: Scale::FromData,
            missing: MissingPolicy::Fail,
            price_divisor: 1,
            adjust_by: None,
        }
    }
}

impl CsvOptions {
    /// The options for a file's layout, from its first two lines: the
    /// normalised `timestamp,open,high,low,close,volume` (the defaults), or
    /// CryptoDataDownload's (a banner line, then `date,symbol,open,...`, local
    /// hours like `2021-01-01 01-PM` in UTC, the volume in the base currency).
    pub fn detect(first_lines: &[&str]) -> Self {
        let crypto_data_download = first_lines
            .get(1)
            .is_some_and(|l| l.starts_with("date,symbol,open,high,low,close"));
        if crypto_data_download {
            Self {
                mapping: ColumnMapping {
                    timestamp: "date".into(),
                    volume: "volume_btc".into(),
                    ..ColumnMapping::default()
                },
                skip_lines: 1,
                time_format: TimeFormat::Pattern("%Y-%m-%d %I-%p".into()),
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }

    /// [`CsvOptions::detect`] on a file's first two lines.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn detect_file(path: &Path) -> std::io::Result<Self> {
        use std::io::BufRead;
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let lines: Vec<String> = file.lines().take(2).collect::<std::io::Result<_>>()?;
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        Ok(Self::detect(&refs))
    }
}

/// The common file layouts, so an import needs no hand-written mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// QuantConnect/Lean daily/hour files: no header, `yyyyMMdd HH:mm`, prices
    /// times 10,000. Stamps are read as UTC, so a daily bar keeps its date (as
    /// the normalised daily files do); pass a zone for Lean's intraday hours.
    Lean,
    /// Yahoo Finance downloads: `Date,Open,High,Low,Close,Adj Close,Volume`;
    /// traded prices unless `adjusted` (then scaled by `Adj Close / Close`).
    Yahoo { adjusted: bool },
    /// CryptoDataDownload: a banner line, `[unix,]date,symbol,open,high,low,close,
    /// Volume <base>,Volume <quote>`; `2019-10-17 09-AM` or ISO stamps, UTC.
    CryptoDataDownload,
    /// Binance klines from data.binance.vision: no header (or the named one),
    /// open time in epoch milliseconds (microseconds in spot files since 2025).
    Binance,
}

impl Preset {
    /// The options for this layout; `first_lines` (the file's first three lines)
    /// settle what varies between files of one vendor (volume column name,
    /// stamp style, epoch unit).
    pub fn options(self, first_lines: &[&str]) -> CsvOptions {
        let by_index = ColumnMapping {
            timestamp: 0.into(),
            open: 1.into(),
            high: 2.into(),
            low: 3.into(),
            close: 4.into(),
            volume: 5.into(),
        };
        match self {
            Preset::Lean => CsvOptions {
                mapping: by_index,
                delimiter: Delimiter::Char(b','),
                has_header: false,
                time_format: TimeFormat::Pattern("%Y%m%d %H:%M".into()),
                price_divisor: 10_000,
                ..CsvOptions::default()
            },
            Preset::Yahoo { adjusted } => CsvOptions {
                mapping: ColumnMapping {
                    timestamp: "Date".into(),
                    ..ColumnMapping::default()
                },
                delimiter: Delimiter::Char(b','),
                adjust_by: adjusted.then(|| "Adj Close".into()),
                ..CsvOptions::default()
            },
            Preset::CryptoDataDownload => {
                let header = first_lines.get(1).copied().unwrap_or("");
                let volume = header
                    .split(',')
                    .map(str::trim)
                    .find(|c| c.to_ascii_lowercase().starts_with("volume"))
                    .unwrap_or("volume");
                let first_stamp = first_lines
                    .get(2)
                    .and_then(|l| {
                        let cols: Vec<&str> = l.split(',').collect();
                        let at = header
                            .split(',')
                            .position(|c| c.trim().eq_ignore_ascii_case("date"))?;
                        cols.get(at).map(|c| c.trim().to_owned())
                    })
                    .unwrap_or_default();
                let hourly_am_pm = first_stamp.ends_with("AM") || first_stamp.ends_with("PM");
                CsvOptions {
                    mapping: ColumnMapping {
                        timestamp: "date".into(),
                        volume: volume.into(),
                        ..ColumnMapping::default()
                    },
                    delimiter: Delimiter::Char(b','),
                    skip_lines: 1,
                    time_format: if hourly_am_pm {
                        TimeFormat::Pattern("%Y-%m-%d %I-%p".into())
                    } else {
                        TimeFormat::Iso8601
                    },
                    ..CsvOptions::default()
                }
            }
            Preset::Binance => {
                let first = first_lines.first().copied().unwrap_or("");
                let cell = first.split(',').next().unwrap_or("").trim();
                let has_header = !cell.bytes().all(|b| b.is_ascii_digit()) || cell.is_empty();
                let stamp = if has_header {
                    first_lines
                        .get(1)
                        .and_then(|l| l.split(',').next())
                        .unwrap_or("")
                        .trim()
                } else {
                    cell
                };
                CsvOptions {
                    mapping: by_index,
                    delimiter: Delimiter::Char(b','),
                    has_header,
                    time_format: if stamp.len() >= 16 {
                        TimeFormat::EpochMicros
                    } else {
                        TimeFormat::EpochMillis
                    },
                    ..CsvOptions::default()
                }
            }
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = DataError;

    /// `lean`, `yahoo`, `yahoo-adjusted`, `cryptodatadownload` (or `cdd`), `binance`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "lean" | "quantconnect" => Preset::Lean,
            "yahoo" => Preset::Yahoo { adjusted: false },
            "yahoo-adjusted" => Preset::Yahoo { adjusted: true },
            "cryptodatadownload" | "cdd" => Preset::CryptoDataDownload,
            "binance" => Preset::Binance,
            other => {
                return Err(DataError::InvalidOption {
                    field: "preset",
                    reason: format!(
                        "{other:?} is not one of lean, yahoo, yahoo-adjusted, cryptodatadownload, binance"
                    ),
                });
            }
        })
    }
}

/// One data line of the source, in file order. `None` = missing cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// 1-based line number in the source file.
    pub line: u64,
    pub ts: Option<TimestampNs>,
    /// open, high, low, close, volume as scaled integers.
    pub values: [Option<i64>; 5],
}

/// The parsed file before validation.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub rows: Vec<RawRow>,
    pub price_scale: u8,
    pub volume_scale: u8,
    pub delimiter: u8,
    /// Rows that could not be read at all (wrong field count, unparsable cells).
    pub findings: Vec<Finding>,
    /// Lines read after the skipped ones and the header.
    pub lines_read: u64,
    /// sha256 of the file's bytes, hex.
    pub file_sha256: String,
}

pub(crate) const FIELD_NAMES: [&str; 6] = ["open", "high", "low", "close", "volume", "adj_close"];

/// Reads and parses a CSV file.
pub fn read_csv(path: &Path, options: &CsvOptions) -> Result<RawTable> {
    let bytes = read_file(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(&bytes, &path.display().to_string(), options)
}

/// [`read_csv`] without the hash: `file_sha256` is empty. For a one-shot run
/// that keeps no record of the file (imports into the catalog hash it, to
/// know it again); the hash was a tenth of such a run's CPU time. The file is
/// still checked to be UTF-8.
pub fn read_csv_unhashed(path: &Path, options: &CsvOptions) -> Result<RawTable> {
    let bytes = read_file(path).map_err(|e| DataError::io(path, e))?;
    parse_csv_in(
        &bytes,
        &path.display().to_string(),
        options,
        SPLIT_MIN_BYTES,
        Hash::Skip,
    )
}

/// The whole file. One of [`SPLIT_MIN_BYTES`] or more is read in two halves
/// on two threads into one buffer: the first touch of a fresh buffer's pages
/// and the copy from the page cache are most of a read's time.
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if len < SPLIT_MIN_BYTES {
        let mut bytes = Vec::with_capacity(len);
        file.read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    let mut bytes = vec![0u8; len];
    let (head, tail) = bytes.split_at_mut(len / 2);
    let at = head.len() as u64;
    std::thread::scope(|s| {
        let tail = s.spawn(move || {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(at))?;
            f.read_exact(tail)
        });
        let head = file.read_exact(head);
        head.and(joined(tail))
    })?;
    // Whatever was appended since the length was read, as `fs::read` would.
    file.seek(SeekFrom::Start(len as u64))?;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn is_missing(cell: &[u8]) -> bool {
    let c = cell.trim_ascii();
    c.is_empty()
        || c.eq_ignore_ascii_case(b"nan")
        || c.eq_ignore_ascii_case(b"null")
        || c.eq_ignore_ascii_case(b"na")
}

/// The candidate that occurs most often outside quotes; ties go to the earlier candidate.
pub fn detect_delimiter(line: &str) -> Option<u8> {
    csv_reader::detect_delimiter(line.as_bytes())
}

/// Reads one timestamp cell: the common UTC shapes straight from the bytes,
/// anything else through [`parse_timestamp`] (which also words the error).
fn read_timestamp(cell: &[u8], options: &CsvOptions) -> Result<TimestampNs, String> {
    let t = cell.trim_ascii();
    if options.time_format == TimeFormat::Iso8601
        && let Some(ns) = grodt_core::time::parse_utc_fast(t)
    {
        return Ok(ns);
    }
    let text = std::str::from_utf8(t).map_err(|_| format!("{t:?} is not UTF-8"))?;
    parse_timestamp(text, &options.time_format, options.zone).map_err(|e| e.0)
}

/// `10^exp == divisor`, or an error naming the option.
fn divisor_exponent(divisor: u64) -> Result<u8> {
    (0u8..=MAX_SCALE)
        .find(|&e| 10u64.checked_pow(u32::from(e)) == Some(divisor))
        .ok_or_else(|| DataError::InvalidOption {
            field: "price_divisor",
            reason: format!(
                "{divisor} is not a power of ten (1, 10, ..., 10^18): only a decimal shift is exact"
            ),
        })
}

/// `round_half_even(value * num / den)` in i128, or None if it overflows `i64`.
fn mul_div_round(value: i64, num: i64, den: i64) -> Option<i64> {
    let p = i128::from(value) * i128::from(num);
    let d = i128::from(den);
    let (q, r) = (p.div_euclid(d), p.rem_euclid(d));
    let twice = 2 * r;
    let q = match twice.cmp(&d) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 != 0 => q + 1,
        _ => q,
    };
    i64::try_from(q).ok()
}

/// Scales open, high, low and close by `adj / close` and volume by `close / adj`
/// (all prices at one scale, so the factor is a plain ratio of raw integers).
fn adjust(cells: &mut [Option<i64>; 6], line: u64) -> std::result::Result<(), (u64, String)> {
    let fault = |why: &str| (line, format!("line {line}: adj_close: {why}"));
    let (Some(close), Some(adj)) = (cells[3], cells[5]) else {
        return Err(fault(
            "close or adjusted close missing, the row cannot be adjusted",
        ));
    };
    if close <= 0 || adj <= 0 {
        return Err(fault("close and adjusted close must be positive to adjust"));
    }
    for cell in cells.iter_mut().take(4) {
        if let Some(v) = *cell {
            *cell = Some(mul_div_round(v, adj, close).ok_or_else(|| fault("overflow"))?);
        }
    }
    if let Some(v) = cells[4] {
        cells[4] = Some(mul_div_round(v, close, adj).ok_or_else(|| fault("overflow"))?);
    }
    Ok(())
}

/// How the cells of a column group become integers.
#[derive(Clone, Copy)]
enum ScalePlan {
    Fixed(u8),
    /// Kept as written (mantissa, decimals) until the largest decimals are known.
    FromData,
}

fn scale_plan(scale: Scale, what: &'static str) -> Result<ScalePlan> {
    match scale {
        Scale::Fixed(s) if s > MAX_SCALE => Err(DataError::InvalidOption {
            field: what,
            reason: format!("scale {s} above {MAX_SCALE}"),
        }),
        Scale::Fixed(s) => Ok(ScalePlan::Fixed(s)),
        Scale::FromData => Ok(ScalePlan::FromData),
    }
}

fn cell_error(line: u64, k: usize, cell: &[u8], e: FixedError) -> (u64, String) {
    let hint = if matches!(e, FixedError::ExcessPrecision { .. }) {
        " (raise the scale or use Scale::FromData)"
    } else {
        ""
    };
    let cell = String::from_utf8_lossy(cell);
    (
        line,
        format!("line {line}: {} {cell:?}: {e}{hint}", FIELD_NAMES[k]),
    )
}

/// Parses CSV bytes; `name` is used in messages. grodt-core's reader
/// ([`csv_reader::Records`]): no allocation per row or cell.
///
/// A file of a megabyte or more is read on three threads: the UTF-8 check and
/// the hash beside two halves of the rows, cut at a line end where no quote
/// can be open. The result is the same as one pass (tests compare the two);
/// the one-shot backtest spent most of its time here on one of two cores.
pub fn parse_csv(bytes: &[u8], name: &str, options: &CsvOptions) -> Result<RawTable> {
    parse_csv_in(bytes, name, options, SPLIT_MIN_BYTES, Hash::Sha256)
}

/// Files this large or larger are parsed on more than one thread.
const SPLIT_MIN_BYTES: usize = 1 << 20;

/// Whether a parse hashes the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Skip,
}

/// The file's sha256 as hex (empty with [`Hash::Skip`]), once it is known to
/// be UTF-8.
fn checked_sha256(bytes: &[u8], hash: Hash) -> std::result::Result<String, std::str::Utf8Error> {
    std::str::from_utf8(bytes)?;
    Ok(match hash {
        Hash::Sha256 => hex::encode(Sha256::digest(bytes)),
        Hash::Skip => String::new(),
    })
}

/// A thread's result, its panic carried on to this thread.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// [`parse_csv`], splitting files of `split_min` bytes or more.
fn parse_csv_in(
    bytes: &[u8],
    name: &str,
    options: &CsvOptions,
    split_min: usize,
    hash: Hash,
) -> Result<RawTable> {
    let not_utf8 = |e: std::str::Utf8Error| DataError::Source {
        file: name.to_owned(),
        reason: format!("not UTF-8: {e}"),
    };
    if bytes.len() < split_min {
        let sha = checked_sha256(bytes, hash).map_err(not_utf8)?;
        let mut table = parse_table(bytes, name, options, false)?;
        table.file_sha256 = sha;
        return Ok(table);
    }
    let (sha, table) = std::thread::scope(|s| {
        let hashing = s.spawn(|| checked_sha256(bytes, hash));
        let table = parse_table(bytes, name, options, true);
        (joined(hashing), table)
    });
    // Not UTF-8 is the first fault named, as when the check ran first.
    let sha = sha.map_err(not_utf8)?;
    let mut table = table?;
    table.file_sha256 = sha;
    Ok(table)
}

/// Where to cut `bytes` in two: just after the line end nearest past the
/// middle of the data, when the first line holding more than blanks (the
/// header, if any) ends before it and no quote comes before it (a quoted
/// field may span lines; past the cut the second reader starts afresh).
fn split_point(bytes: &[u8], skip: usize) -> Option<usize> {
    let start = bytes.len() - csv_reader::skip_lines(bytes, skip).len();
    let first = csv_reader::first_nonblank_line(&bytes[start..])?;
    // `first` borrows `bytes`: its end as an offset.
    let first_end = first.as_ptr() as usize - bytes.as_ptr() as usize + first.len();
    let from = (start + (bytes.len() - start) / 2).max(first_end);
    let at = from + bytes[from..].iter().position(|&b| b == b'\n')? + 1;
    (at < bytes.len() && !bytes[start..at].contains(&b'"')).then_some(at)
}

/// The table of `bytes` without its hash; in two halves on two threads if
/// `split` and the file allows it.
fn parse_table(bytes: &[u8], name: &str, options: &CsvOptions, split: bool) -> Result<RawTable> {
    let source_err = |reason: String| DataError::Source {
        file: name.to_owned(),
        reason,
    };
    let first = csv_reader::first_nonblank_line(csv_reader::skip_lines(bytes, options.skip_lines))
        .ok_or_else(|| source_err(format!("no lines after skipping {}", options.skip_lines)))?;
    let delimiter = match options.delimiter {
        Delimiter::Char(c) => c,
        Delimiter::Auto => csv_reader::detect_delimiter(first).ok_or_else(|| {
            source_err(format!(
                "line {}: no delimiter among , tab ; | found",
                options.skip_lines + 1
            ))
        })?,
    };
    let cut = if split {
        split_point(bytes, options.skip_lines)
    } else {
        None
    };
    let head_bytes = cut.map_or(bytes, |at| &bytes[..at]);
    let mut records = csv_reader::Records::new(head_bytes, delimiter, options.skip_lines);
    let header: Option<Vec<String>> = if options.has_header {
        next_record(&mut records, name)?.map(|(_, h)| {
            h.iter()
                .map(|c| String::from_utf8_lossy(c).trim().to_owned())
                .collect()
        })
    } else {
        None
    };
    let m = &options.mapping;
    let refs = [&m.timestamp, &m.open, &m.high, &m.low, &m.close, &m.volume];
    let names = ["timestamp", "open", "high", "low", "close", "volume"];
    let mut idx = [0usize; 6];
    for (k, r) in refs.iter().enumerate() {
        idx[k] = match (r, &header) {
            (ColumnRef::Index(i), _) => *i,
            (ColumnRef::Name(n), Some(h)) => h
                .iter()
                .position(|c| c.eq_ignore_ascii_case(n))
                .ok_or_else(|| {
                    source_err(format!("column {n:?} for {} not in header {h:?}", names[k]))
                })?,
            (ColumnRef::Name(n), None) => {
                return Err(DataError::InvalidOption {
                    field: "mapping",
                    reason: format!(
                        "{} mapped by name {n:?} but the file has no header",
                        names[k]
                    ),
                });
            }
        };
    }
    let width = header.as_ref().map(Vec::len);
    let max_idx = idx.iter().copied().max().unwrap_or(0);
    if let Some(w) = width
        && max_idx >= w
    {
        return Err(DataError::InvalidOption {
            field: "mapping",
            reason: format!("column index {max_idx} beyond the header's {w} columns"),
        });
    }
    let adj_idx = match (&options.adjust_by, &header) {
        (None, _) => None,
        (Some(ColumnRef::Index(i)), _) => Some(*i),
        (Some(ColumnRef::Name(n)), Some(h)) => Some(
            h.iter()
                .position(|c| c.eq_ignore_ascii_case(n))
                .ok_or_else(|| {
                    source_err(format!("column {n:?} for adjust_by not in header {h:?}"))
                })?,
        ),
        (Some(ColumnRef::Name(n)), None) => {
            return Err(DataError::InvalidOption {
                field: "adjust_by",
                reason: format!("mapped by name {n:?} but the file has no header"),
            });
        }
    };
    let max_idx = max_idx.max(adj_idx.unwrap_or(0));
    if let Some(w) = width
        && max_idx >= w
    {
        return Err(DataError::InvalidOption {
            field: "adjust_by",
            reason: format!("column index {max_idx} beyond the header's {w} columns"),
        });
    }
    let divisor_exp = divisor_exponent(options.price_divisor)?;
    let price_plan = scale_plan(options.price_scale, "price_scale")?;
    let volume_plan = scale_plan(options.volume_scale, "volume_scale")?;

    let plan = RowPlan {
        idx,
        adj_idx,
        width,
        max_idx,
        expected: width.unwrap_or(max_idx + 1),
        cells: if adj_idx.is_some() { 6 } else { 5 },
        divisor_exp,
        price_plan,
        volume_plan,
        any_from_data: matches!(price_plan, ScalePlan::FromData)
            || matches!(volume_plan, ScalePlan::FromData),
    };
    let scales = |price_decimals: u8, volume_decimals: u8| {
        let price = match price_plan {
            ScalePlan::Fixed(s) => s,
            ScalePlan::FromData => price_decimals,
        };
        let volume = match volume_plan {
            ScalePlan::Fixed(s) => s,
            ScalePlan::FromData => volume_decimals,
        };
        (price, volume)
    };
    let rescaled = plan.any_from_data || plan.adj_idx.is_some();
    let (part, (price_scale, volume_scale)) = match cut {
        None => {
            let mut part = read_part(&mut records, name, options, &plan, bytes.len() / 48)?;
            let scales = scales(part.price_decimals, part.volume_decimals);
            if rescaled {
                part.rescale(&plan, scales);
            }
            (part, scales)
        }
        Some(at) => {
            let tail = &bytes[at..];
            let (head, tail) = std::thread::scope(|s| {
                let tail = s.spawn(|| {
                    let newlines = bytes[..at].iter().filter(|&&b| b == b'\n').count();
                    let mut r =
                        csv_reader::Records::starting_at(tail, delimiter, newlines as u64 + 1);
                    read_part(&mut r, name, options, &plan, tail.len() / 48)
                });
                // Sized for the whole file, so the tail appends without growing it.
                let head = read_part(&mut records, name, options, &plan, bytes.len() / 48);
                (head, joined(tail))
            });
            // The first fault in file order, as one pass would meet it.
            let (mut head, mut tail) = (head?, tail?);
            let scales = scales(
                head.price_decimals.max(tail.price_decimals),
                head.volume_decimals.max(tail.volume_decimals),
            );
            if rescaled {
                std::thread::scope(|s| {
                    s.spawn(|| tail.rescale(&plan, scales));
                    head.rescale(&plan, scales);
                });
            }
            head.append(tail);
            (head, scales)
        }
    };
    let Part {
        rows,
        field_count_rows,
        mut bad_rows,
        lines_read,
        ..
    } = part;
    if rescaled {
        // The rows the rescale dropped come after the unparsable ones.
        bad_rows.sort_by_key(|r| r.0);
    }
    let mut findings = Vec::new();
    if !field_count_rows.is_empty() {
        let (l, got, exp) = field_count_rows[0];
        findings.push(Finding {
            layer: Layer::Schema,
            severity: Severity::Error,
            code: FindingCode::FieldCount,
            message: format!(
                "{} line(s) with the wrong number of fields, first line {l}: {got} fields, expected {exp}",
                field_count_rows.len()
            ),
            rows: field_count_rows.iter().map(|r| r.0).collect(),
        });
    }
    if !bad_rows.is_empty() {
        findings.push(Finding {
            layer: Layer::Schema,
            severity: Severity::Error,
            code: FindingCode::Unparsable,
            message: format!(
                "{} line(s) with unparsable cells, first: {}",
                bad_rows.len(),
                bad_rows[0].1
            ),
            rows: bad_rows.iter().map(|r| r.0).collect(),
        });
    }
    Ok(RawTable {
        rows,
        price_scale,
        volume_scale,
        delimiter,
        findings,
        lines_read,
        file_sha256: String::new(),
    })
}

/// How the cells of a row are read: the mapping resolved against the header.
#[derive(Clone, Copy)]
struct RowPlan {
    idx: [usize; 6],
    adj_idx: Option<usize>,
    width: Option<usize>,
    max_idx: usize,
    expected: usize,
    cells: usize,
    divisor_exp: u8,
    price_plan: ScalePlan,
    volume_plan: ScalePlan,
    any_from_data: bool,
}

/// What a stretch of records parsed to; the halves of a file append.
struct Part {
    rows: Vec<RawRow>,
    /// Per kept row: the adjusted close, and the decimals as written of each
    /// cell while a scale comes from the data. Cell 5 is the adjusted close.
    adj: Vec<Option<i64>>,
    written: Vec<[u8; 6]>,
    field_count_rows: Vec<(u64, usize, usize)>,
    bad_rows: Vec<(u64, String)>,
    price_decimals: u8,
    volume_decimals: u8,
    lines_read: u64,
}

impl Part {
    /// `later` read after `self` (the next stretch of the same file), both
    /// already at the file's scales: only what the table keeps is joined.
    fn append(&mut self, later: Self) {
        self.rows.extend(later.rows);
        self.field_count_rows.extend(later.field_count_rows);
        self.bad_rows.extend(later.bad_rows);
        self.lines_read += later.lines_read;
    }

    /// Mantissas to the scales now known, then the adjustment; a cell that no
    /// longer fits, or a row that cannot be adjusted, drops its row (named in
    /// `bad_rows`). In place (`retain_mut` keeps the order): a second table
    /// of rows was the one-shot backtest's largest allocation.
    fn rescale(&mut self, plan: &RowPlan, (price_scale, volume_scale): (u8, u8)) {
        let RowPlan {
            adj_idx,
            cells,
            price_plan,
            volume_plan,
            ..
        } = *plan;
        let (adj, written, bad_rows) = (&self.adj, &self.written, &mut self.bad_rows);
        let mut i = 0;
        self.rows.retain_mut(|row| {
            let at = i;
            i += 1;
            let mut cells6 = [None; 6];
            cells6[..5].copy_from_slice(&row.values);
            cells6[5] = adj.get(at).copied().flatten();
            let fault = (|| {
                for k in 0..cells {
                    let (plan, scale) = if k == 4 {
                        (volume_plan, volume_scale)
                    } else {
                        (price_plan, price_scale)
                    };
                    let (ScalePlan::FromData, Some(m)) = (plan, cells6[k]) else {
                        continue;
                    };
                    let d = written[at][k];
                    let w = grodt_core::fixed::WrittenDecimal {
                        mantissa: m,
                        decimals: usize::from(d),
                    };
                    cells6[k] = Some(w.at_scale(scale).map_err(|e| {
                        let text = crate::fixed::format_fixed(m, d);
                        cell_error(row.line, k, text.as_bytes(), e)
                    })?);
                }
                if adj_idx.is_some() {
                    adjust(&mut cells6, row.line)?;
                }
                Ok::<(), (u64, String)>(())
            })();
            match fault {
                Err(f) => {
                    bad_rows.push(f);
                    false
                }
                Ok(()) => {
                    row.values.copy_from_slice(&cells6[..5]);
                    true
                }
            }
        });
        // Read once; free them before the rows are joined.
        self.adj = Vec::new();
        self.written = Vec::new();
    }
}

fn next_record<'r>(
    records: &'r mut csv_reader::Records<'_>,
    name: &str,
) -> Result<Option<(u64, &'r csv_reader::ByteRecord)>> {
    records.next_record().map_err(|e| DataError::Source {
        file: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads every record left in `records` as rows.
fn read_part(
    records: &mut csv_reader::Records<'_>,
    name: &str,
    options: &CsvOptions,
    plan: &RowPlan,
    capacity: usize,
) -> Result<Part> {
    let RowPlan {
        idx,
        adj_idx,
        width,
        max_idx,
        expected,
        cells,
        divisor_exp,
        price_plan,
        volume_plan,
        any_from_data,
    } = *plan;
    let mut field_count_rows = Vec::new();
    let mut bad_rows: Vec<(u64, String)> = Vec::new();
    let mut rows = Vec::with_capacity(capacity);
    let mut adj: Vec<Option<i64>> = Vec::new();
    let mut written: Vec<[u8; 6]> = Vec::new();
    let (mut price_decimals, mut volume_decimals) = (0u8, 0u8);
    let mut lines_read = 0u64;
    'rows: while let Some((line, fields)) = next_record(records, name)? {
        lines_read += 1;
        if fields.len() != expected && (width.is_some() || fields.len() <= max_idx) {
            field_count_rows.push((line, fields.len(), expected));
            continue;
        }
        let ts_cell = &fields[idx[0]];
        let ts = if is_missing(ts_cell) {
            None
        } else {
            match read_timestamp(ts_cell, options) {
                Ok(t) => Some(t),
                Err(e) => {
                    bad_rows.push((line, format!("line {line}: timestamp: {e}")));
                    continue;
                }
            }
        };
        let mut values = [None; 6];
        let mut decimals = [0u8; 6];
        for k in 0..cells {
            let cell = &fields[if k == 5 {
                adj_idx.unwrap_or(0)
            } else {
                idx[k + 1]
            }];
            if is_missing(cell) {
                continue;
            }
            let is_volume = k == 4;
            let plan = if is_volume { volume_plan } else { price_plan };
            let parsed = grodt_core::fixed::parse_written(cell)
                .map(|w| if is_volume { w } else { w.shifted(divisor_exp) })
                .and_then(|w| match plan {
                    ScalePlan::Fixed(s) => w.at_scale(s),
                    ScalePlan::FromData => {
                        let d = u8::try_from(w.decimals).unwrap_or(u8::MAX);
                        decimals[k] = d;
                        let seen = if is_volume {
                            &mut volume_decimals
                        } else {
                            &mut price_decimals
                        };
                        *seen = (*seen).max(d.min(MAX_SCALE));
                        Ok(w.mantissa)
                    }
                });
            match parsed {
                Ok(v) => values[k] = Some(v),
                Err(e) => {
                    bad_rows.push(cell_error(line, k, cell, e));
                    continue 'rows;
                }
            }
        }
        let mut five = [None; 5];
        five.copy_from_slice(&values[..5]);
        rows.push(RawRow {
            line,
            ts,
            values: five,
        });
        if adj_idx.is_some() {
            adj.push(values[5]);
        }
        if any_from_data {
            written.push(decimals);
        }
    }
    Ok(Part {
        rows,
        adj,
        written,
        field_count_rows,
        bad_rows,
        price_decimals,
        volume_decimals,
        lines_read,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn detect_knows_the_normalised_and_cryptodatadownload_layouts() {
        let normal = CsvOptions::detect(&["timestamp,open,high,low,close,volume", "x"]);
        assert_eq!(normal, CsvOptions::default());
        let cdd = CsvOptions::detect(&[
            "Timestamps are UTC timezone,https://www.CryptoDataDownload.com",
            "date,symbol,open,high,low,close,volume_btc,volume",
        ]);
        assert_eq!(cdd.skip_lines, 1);
        assert_eq!(cdd.mapping.timestamp, "date".into());
        assert_eq!(cdd.mapping.volume, "volume_btc".into());
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/coinbase_btcusd_1h_raw.csv");
        let options = CsvOptions::detect_file(&sample).unwrap();
        let raw = read_csv(&sample, &options).unwrap();
        assert!(raw.findings.is_empty(), "{:?}", raw.findings.first());
        assert!(raw.rows.len() > 10_000);
    }

    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn lean_integer_prices_divide_exactly() {
        // QuantConnect/Lean daily: no header, `yyyyMMdd HH:mm`, prices times 10,000.
        let o = CsvOptions {
            mapping: ColumnMapping {
                timestamp: 0.into(),
                open: 1.into(),
                high: 2.into(),
                low: 3.into(),
                close: 4.into(),
                volume: 5.into(),
            },
            has_header: false,
            time_format: TimeFormat::Pattern("%Y%m%d %H:%M".into()),
            price_divisor: 10_000,
            ..CsvOptions::default()
        };
        let t = read_csv(&fixture("lean_spy_daily.csv"), &o).unwrap();
        assert!(t.findings.is_empty(), "{:?}", t.findings);
        assert_eq!(t.price_scale, 2);
        // The same bars as the normalised SPY sample: 97.31, 97.53, 96.53, 97.36.
        assert_eq!(
            t.rows[0].values,
            [
                Some(9731),
                Some(9753),
                Some(9653),
                Some(9736),
                Some(2_150_000)
            ]
        );
        assert_eq!(t.rows[0].ts, Some(883_699_200_000_000_000)); // 1998-01-02T00:00:00Z
        let e = parse_csv(
            b"1,2,3,4,5,6\n",
            "t",
            &CsvOptions {
                price_divisor: 3,
                ..o
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("price_divisor"), "{e}");
    }

    #[test]
    fn yahoo_adjusted_close_raw_or_adjusted() {
        let raw = read_csv(&fixture("yahoo_aapl_daily.csv"), &CsvOptions::default());
        // The default mapping wants "timestamp": Yahoo's layout needs its own mapping.
        assert!(raw.is_err());
        let o = CsvOptions {
            mapping: ColumnMapping {
                timestamp: "Date".into(),
                ..ColumnMapping::default()
            },
            ..CsvOptions::default()
        };
        let raw = read_csv(&fixture("yahoo_aapl_daily.csv"), &o).unwrap();
        assert_eq!(raw.price_scale, 6);
        assert_eq!(raw.rows[0].values[0], Some(504_000_000));
        assert_eq!(raw.rows[0].values[4], Some(1000));
        let adjusted = CsvOptions {
            adjust_by: Some("Adj Close".into()),
            ..o.clone()
        };
        let adj = read_csv(&fixture("yahoo_aapl_daily.csv"), &adjusted).unwrap();
        assert!(adj.findings.is_empty(), "{:?}", adj.findings);
        // Factor 125/500 = 0.25: prices times it, volume divided by it.
        assert_eq!(
            adj.rows[0].values,
            [
                Some(126_000_000),
                Some(126_750_000),
                Some(124_500_000),
                Some(125_000_000),
                Some(4000)
            ]
        );
        // 127/508 = 0.25 again; a factor of 1 leaves the row as it was.
        assert_eq!(adj.rows[1].values[3], Some(127_000_000));
        assert_eq!(adj.rows[1].values[4], Some(8000));
        assert_eq!(adj.rows[2].values, raw.rows[2].values);
        // A row that cannot be adjusted is named.
        let text = "Date,Open,High,Low,Close,Adj Close,Volume\n2020-08-27,1,1,1,0,1,5\n";
        let t = parse_csv(text.as_bytes(), "y", &adjusted).unwrap();
        let f = t
            .findings
            .iter()
            .find(|f| f.code == FindingCode::Unparsable)
            .unwrap();
        assert!(f.message.contains("line 2: adj_close"), "{}", f.message);
    }

    #[test]
    fn presets_read_the_real_layouts() {
        let first = |p: &std::path::Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .take(3)
                .map(str::to_owned)
                .collect()
        };
        let read = |preset: &str, path: std::path::PathBuf| {
            let lines = first(&path);
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let o = preset.parse::<Preset>().unwrap().options(&refs);
            read_csv(&path, &o).unwrap()
        };
        let lean = read("lean", fixture("lean_spy_daily.csv"));
        assert!(lean.findings.is_empty(), "{:?}", lean.findings);
        assert_eq!(lean.rows[1].values[3], Some(9775));
        let yahoo = read("yahoo-adjusted", fixture("yahoo_aapl_daily.csv"));
        assert_eq!(yahoo.rows[0].values[3], Some(125_000_000));
        let cdd = read(
            "cryptodatadownload",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../data/samples/coinbase_btcusd_1h_raw.csv"),
        );
        assert!(cdd.findings.is_empty(), "{:?}", cdd.findings.first());
        assert_eq!(cdd.rows.len(), 20_111);
        let binance = parse_csv(
            b"1735689600000000,93576.00,93610.93,93537.50,93610.93,8.21827,1735689659999999,769094.06,1256,4.71,441267.02,0\n",
            "b",
            &Preset::Binance.options(&["1735689600000000,93576.00"]),
        )
        .unwrap();
        assert_eq!(binance.rows[0].ts, Some(1_735_689_600_000_000_000));
        assert!("morningstar".parse::<Preset>().is_err());
    }

    #[test]
    fn detects_delimiters() {
        assert_eq!(detect_delimiter("a,b,c"), Some(b','));
        assert_eq!(detect_delimiter("a\tb\tc"), Some(b'\t'));
        assert_eq!(detect_delimiter("a;b;c"), Some(b';'));
        assert_eq!(detect_delimiter("a|b|c"), Some(b'|'));
        assert_eq!(detect_delimiter("\"1,5\";2;3"), Some(b';'));
        assert_eq!(detect_delimiter("abc"), None);
    }

    #[test]
    fn maps_columns_by_index_without_header_and_skips_banner() {
        let text = "banner line\n1704150060|1.1|1.2|1.0|1.15|5\n1704150120|1.15|1.3|1.1|1.2|7.5\n";
        let o = CsvOptions {
            mapping: ColumnMapping {
                timestamp: 0.into(),
                open: 1.into(),
                high: 2.into(),
                low: 3.into(),
                close: 4.into(),
                volume: 5.into(),
            },
            has_header: false,
            skip_lines: 1,
            time_format: TimeFormat::EpochSeconds,
            ..CsvOptions::default()
        };
        let t = parse_csv(text.as_bytes(), "t", &o).unwrap();
        assert_eq!(t.delimiter, b'|');
        assert_eq!((t.price_scale, t.volume_scale), (2, 1));
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].line, 2);
        assert_eq!(
            t.rows[0].values,
            [Some(110), Some(120), Some(100), Some(115), Some(50)]
        );
        assert_eq!(t.rows[1].ts, Some(1_704_150_120_000_000_000));
    }

    #[test]
    fn reports_bad_cells_with_line_numbers() {
        let text = "timestamp;open;high;low;close;volume\n2024-01-01T00:00:00Z;1;2;0.5;1;3\n2024-01-01T00:01:00Z;1;x;0.5;1;3\nnot-a-date;1;2;0.5;1;3\n2024-01-01T00:03:00Z;1;2\n2024-01-01T00:04:00Z;1.001;2;0.5;1;3\n";
        let o = CsvOptions {
            price_scale: Scale::Fixed(2),
            ..CsvOptions::default()
        };
        let t = parse_csv(text.as_bytes(), "t", &o).unwrap();
        assert_eq!(t.rows.len(), 1);
        let fc = t
            .findings
            .iter()
            .find(|f| f.code == FindingCode::FieldCount)
            .unwrap();
        assert_eq!(fc.rows, vec![5]);
        let un = t
            .findings
            .iter()
            .find(|f| f.code == FindingCode::Unparsable)
            .unwrap();
        assert_eq!(un.rows, vec![3, 4, 6]);
        assert!(un.message.contains("line 3: high \"x\""), "{}", un.message);
    }

    #[test]
    fn missing_cells_are_kept_as_none_and_unknown_columns_fail() {
        let text = "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,,0.5,NaN,3\n";
        let t = parse_csv(text.as_bytes(), "t", &CsvOptions::default()).unwrap();
        assert_eq!(t.rows[0].values, [Some(10), None, Some(5), None, Some(3)]);
        let o = CsvOptions {
            mapping: ColumnMapping {
                volume: "vol".into(),
                ..ColumnMapping::default()
            },
            ..CsvOptions::default()
        };
        let e = parse_csv(text.as_bytes(), "f.csv", &o).unwrap_err();
        assert!(e.to_string().contains("\"vol\""), "{e}");
    }

    /// The table read in one pass and the table read on three threads, as text
    /// (every row, finding, scale, count and the hash).
    fn one_and_split(text: &[u8], o: &CsvOptions) -> (String, String) {
        let one = format!("{:?}", parse_csv_in(text, "t", o, usize::MAX, Hash::Sha256));
        let split = format!("{:?}", parse_csv_in(text, "t", o, 0, Hash::Sha256));
        (one, split)
    }

    #[test]
    fn two_halves_read_what_one_pass_reads() {
        // Faults, blanks and the longest decimals on both sides of the cut.
        let mut text = String::from("banner line\ntimestamp,open,high,low,close,volume,adj\n");
        for i in 0..40 {
            let late = i >= 20;
            let row = match i % 10 {
                0 => String::new(),
                3 => format!("2024-01-01T00:{i:02}:00Z,1,2\n"),
                5 => format!("2024-01-01T00:{i:02}:00Z,1,x,1,1,1,1\n"),
                7 if late => format!("2024-01-01T00:{i:02}:00Z,1.12345,2,1,1.5,0.001,1.5\n"),
                8 => format!("2024-01-01T00:{i:02}:00Z,,2,1,1,1,1\n"),
                9 if late => "not a time,1,2,1,1,1,1\n".to_owned(),
                // Fits as written, overflows at the scale the later rows set.
                4 if !late => format!("2024-01-01T00:{i:02}:00Z,92233720368548,2,1,1,1,1\n"),
                6 if late => format!("2024-01-01T00:{i:02}:00Z,1,2,1,1,1,\n"),
                _ => format!("2024-01-01T00:{i:02}:00Z,1.5,2,1,1.25,{i},1.5\n"),
            };
            text.push_str(if row.is_empty() { "\n" } else { &row });
        }
        let text = text.into_bytes();
        let cut = split_point(&text, 1).expect("a cut past the header");
        assert!(cut > text.len() / 3 && cut < text.len() * 2 / 3, "{cut}");
        let plain = CsvOptions {
            skip_lines: 1,
            ..CsvOptions::default()
        };
        let fixed = CsvOptions {
            price_scale: Scale::Fixed(8),
            volume_scale: Scale::Fixed(4),
            ..plain.clone()
        };
        let adjusted = CsvOptions {
            adjust_by: Some("adj".into()),
            ..plain.clone()
        };
        for o in [&plain, &fixed, &adjusted] {
            let (one, split) = one_and_split(&text, o);
            assert_eq!(one, split);
            assert!(one.contains("unparsable"), "{one}");
            assert!(one.contains("wrong number of fields"), "{one}");
        }
        // The rescale and the adjustment dropped rows on both sides of the cut.
        let (one, _) = one_and_split(&text, &adjusted);
        assert!(one.contains("line 7: open"), "{one}");
        // 7 overflows at the scale; 29 and 39 have no adjusted close.
        assert!(
            one.contains("rows: [7, 8, 17, 18, 28, 29, 32, 38, 39, 42]"),
            "{one}"
        );
        // Not UTF-8 (in the second half) is named first either way.
        let mut bad = text.clone();
        let at = bad.len() - 3;
        bad[at] = 0xff;
        let (one, split) = one_and_split(&bad, &plain);
        assert_eq!(one, split);
        assert!(one.contains("not UTF-8"), "{one}");
    }

    #[test]
    fn no_cut_after_a_quote_and_none_in_the_header() {
        let row = "2024-01-01T00:00:00Z,1,2,1,1,1\n";
        let mut quoted = String::from("timestamp,open,high,low,close,volume\n");
        quoted.push_str(&row.replace(",1,2,", ",\"1\",2,"));
        quoted.push_str(&row.repeat(20));
        assert_eq!(split_point(quoted.as_bytes(), 0), None);
        // A quote past the middle leaves the cut possible.
        let mut late = String::from("timestamp,open,high,low,close,volume\n");
        late.push_str(&row.repeat(20));
        late.push_str(&row.replace(",1,2,", ",\"1\",2,"));
        assert!(split_point(late.as_bytes(), 0).is_some());
        let (one, split) = one_and_split(late.as_bytes(), &CsvOptions::default());
        assert_eq!(one, split);
        // Only a header: nothing to cut.
        assert_eq!(split_point(b"timestamp,open\n", 0), None);
        // The cut may fall just after the header: the second reader gets the rest.
        let short = b"timestamp,open,high,low,close,volume\nx,1";
        assert_eq!(split_point(short, 0), Some(37));
        let (one, split) = one_and_split(short, &CsvOptions::default());
        assert_eq!(one, split);
        assert!(one.contains("line 2"), "{one}");
    }

    /// The 130,708-row BTC/USDT one-minute sample (8.6 MB).
    fn btc_minutes() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv")
    }

    #[test]
    fn a_large_file_read_in_two_halves_is_the_file() {
        let sample = btc_minutes();
        let whole = std::fs::read(&sample).unwrap();
        assert!(whole.len() >= SPLIT_MIN_BYTES);
        assert!(read_file(&sample).unwrap() == whole);
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("odd.csv");
        std::fs::write(&odd, &whole[..SPLIT_MIN_BYTES + 7]).unwrap();
        assert!(read_file(&odd).unwrap() == whole[..SPLIT_MIN_BYTES + 7]);
        std::fs::write(&odd, b"small").unwrap();
        assert_eq!(read_file(&odd).unwrap(), b"small");
        assert!(read_file(&dir.path().join("none.csv")).is_err());
    }

    #[test]
    fn an_unhashed_read_is_the_table_without_its_hash() {
        let sample = btc_minutes();
        let o = CsvOptions::detect_file(&sample).unwrap();
        let hashed = read_csv(&sample, &o).unwrap();
        let unhashed = read_csv_unhashed(&sample, &o).unwrap();
        assert_eq!(hashed.file_sha256.len(), 64);
        assert_eq!(unhashed.file_sha256, "");
        let without_hash = RawTable {
            file_sha256: String::new(),
            ..hashed
        };
        assert_eq!(format!("{without_hash:?}"), format!("{unhashed:?}"));
        // Still refused when not UTF-8, small or split.
        let dir = tempfile::tempdir().unwrap();
        for len in [100, SPLIT_MIN_BYTES + 100] {
            let mut bytes = std::fs::read(&sample).unwrap();
            bytes.truncate(len);
            bytes[len - 2] = 0xff;
            let path = dir.path().join(format!("bad{len}.csv"));
            std::fs::write(&path, &bytes).unwrap();
            let e = read_csv_unhashed(&path, &o).unwrap_err().to_string();
            assert!(e.contains("not UTF-8"), "{len}: {e}");
        }
    }

    #[test]
    fn the_real_sample_reads_the_same_on_three_threads() {
        let sample = btc_minutes();
        let bytes = std::fs::read(&sample).unwrap();
        assert!(bytes.len() >= SPLIT_MIN_BYTES);
        let o = CsvOptions::detect_file(&sample).unwrap();
        let (one, split) = one_and_split(&bytes, &o);
        assert_eq!(one, split);
        assert!(one.len() > 1_000_000);
    }

    proptest::proptest! {
        #[test]
        fn any_file_reads_the_same_cut_or_not(
            rows in proptest::collection::vec((0u8..8, 0u32..100_000, 0usize..6), 1..60),
            crlf in proptest::bool::ANY,
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("timestamp,open,high,low,close,volume{end}");
            for (i, (kind, v, d)) in rows.iter().enumerate() {
                let cell = format!("{}.{:0d$}", v / 100, v % 100, d = *d);
                let cell = cell.trim_end_matches('.');
                let ts = format!("2024-01-01T{:02}:{:02}:00Z", i / 60, i % 60);
                let line = match kind {
                    0 => String::new(),
                    1 => format!("{ts},{cell}"),
                    2 => format!("{ts},{cell},oops,1,1,1"),
                    3 => format!("{ts},,1,1,1,1"),
                    _ => format!("{ts},{cell},{cell},{cell},{cell},{v}"),
                };
                text.push_str(&line);
                text.push_str(end);
            }
            let (one, split) = one_and_split(text.as_bytes(), &CsvOptions::default());
            proptest::prop_assert_eq!(one, split);
        }
    }
}
