//! Reading a CSV file into raw rows: schema mapping, delimiter detection, header,
//! skipped leading lines, exact decimal parsing, timestamps converted to UTC.
//! Nothing here judges the data; `validate` does.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::fixed::{self, FixedError, MAX_SCALE};
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

pub(crate) const FIELD_NAMES: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// Reads and parses a CSV file.
pub fn read_csv(path: &Path, options: &CsvOptions) -> Result<RawTable> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(&bytes, &path.display().to_string(), options)
}

fn is_missing(cell: &str) -> bool {
    let c = cell.trim();
    c.is_empty()
        || c.eq_ignore_ascii_case("nan")
        || c.eq_ignore_ascii_case("null")
        || c.eq_ignore_ascii_case("na")
}

/// Splits one line, honouring double quotes (`""` inside quotes is a quote).
fn split_line(line: &str, delim: u8) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c as u32 == u32::from(delim) {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// The candidate that occurs most often outside quotes; ties go to the earlier candidate.
pub fn detect_delimiter(line: &str) -> Option<u8> {
    let mut best: Option<(u8, usize)> = None;
    for d in [b',', b'\t', b';', b'|'] {
        let n = split_line(line, d).len() - 1;
        if n > 0 && best.is_none_or(|(_, m)| n > m) {
            best = Some((d, n));
        }
    }
    best.map(|(d, _)| d)
}

/// Parses CSV bytes; `name` is used in messages.
pub fn parse_csv(bytes: &[u8], name: &str, options: &CsvOptions) -> Result<RawTable> {
    let source_err = |reason: String| DataError::Source {
        file: name.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| source_err(format!("not UTF-8: {e}")))?;
    let file_sha256 = hex::encode(Sha256::digest(bytes));
    // (1-based line number, content without the line end)
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix('\r').unwrap_or(l)))
        .skip(options.skip_lines)
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let first = lines
        .peek()
        .map(|&(_, l)| l)
        .ok_or_else(|| source_err(format!("no lines after skipping {}", options.skip_lines)))?;
    let delimiter = match options.delimiter {
        Delimiter::Char(c) => c,
        Delimiter::Auto => detect_delimiter(first).ok_or_else(|| {
            source_err(format!(
                "line {}: no delimiter among , tab ; | found",
                options.skip_lines + 1
            ))
        })?,
    };
    let header: Option<Vec<String>> = if options.has_header {
        lines.next().map(|(_, l)| {
            split_line(l, delimiter)
                .into_iter()
                .map(|h| h.trim().to_owned())
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
    let data: Vec<(u64, Vec<String>)> = lines.map(|(n, l)| (n, split_line(l, delimiter))).collect();
    let max_idx = idx.iter().copied().max().unwrap_or(0);
    if let Some(w) = width
        && max_idx >= w
    {
        return Err(DataError::InvalidOption {
            field: "mapping",
            reason: format!("column index {max_idx} beyond the header's {w} columns"),
        });
    }

    let choose = |scale: Scale, cols: &[usize], what: &'static str| -> Result<u8> {
        match scale {
            Scale::Fixed(s) if s > MAX_SCALE => Err(DataError::InvalidOption {
                field: what,
                reason: format!("scale {s} above {MAX_SCALE}"),
            }),
            Scale::Fixed(s) => Ok(s),
            Scale::FromData => Ok(data
                .iter()
                .flat_map(|(_, f)| cols.iter().filter_map(move |&c| f.get(c)))
                .filter_map(|cell| fixed::significant_decimals(cell))
                .max()
                .unwrap_or(0)
                .min(MAX_SCALE)),
        }
    };
    let price_scale = choose(options.price_scale, &idx[1..5], "price_scale")?;
    let volume_scale = choose(options.volume_scale, &idx[5..6], "volume_scale")?;

    let mut findings = Vec::new();
    let mut field_count_rows = Vec::new();
    let mut bad_rows: Vec<(u64, String)> = Vec::new();
    let mut rows = Vec::with_capacity(data.len());
    let lines_read = data.len() as u64;
    for (line, fields) in data {
        let expected = width.unwrap_or(max_idx + 1);
        if fields.len() != expected && (width.is_some() || fields.len() <= max_idx) {
            field_count_rows.push((line, fields.len(), expected));
            continue;
        }
        let ts_cell = &fields[idx[0]];
        let ts = if is_missing(ts_cell) {
            None
        } else {
            match parse_timestamp(ts_cell, &options.time_format, options.zone) {
                Ok(t) => Some(t),
                Err(e) => {
                    bad_rows.push((line, format!("line {line}: timestamp: {}", e.0)));
                    continue;
                }
            }
        };
        let mut values = [None; 5];
        let mut ok = true;
        for k in 0..5 {
            let cell = &fields[idx[k + 1]];
            if is_missing(cell) {
                continue;
            }
            let scale = if k == 4 { volume_scale } else { price_scale };
            match fixed::parse_fixed(cell, scale) {
                Ok(v) => values[k] = Some(v),
                Err(e) => {
                    let hint = if matches!(e, FixedError::ExcessPrecision { .. }) {
                        " (raise the scale or use Scale::FromData)"
                    } else {
                        ""
                    };
                    bad_rows.push((
                        line,
                        format!("line {line}: {} {cell:?}: {e}{hint}", FIELD_NAMES[k]),
                    ));
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            rows.push(RawRow { line, ts, values });
        }
    }
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
        file_sha256,
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
}
