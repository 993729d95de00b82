//! Validation in layers (schema and types, OHLCV relations, outliers, temporal),
//! each finding with the 1-based source line numbers and a severity. Errors stop
//! an import; warnings are kept in the quality report.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bars::Bars;
use crate::calendar::{BarLabel, Calendar};
use crate::import::{MissingPolicy, RawRow, RawTable};
use crate::time::{TimestampNs, format_ns};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layer {
    Schema,
    Relations,
    Outliers,
    Temporal,
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FindingCode {
    /// A line with another number of fields than the header.
    FieldCount,
    /// A timestamp or number that cannot be read (or has more decimals than the scale).
    Unparsable,
    /// Empty cells under the `Fail` policy, or a missing timestamp / first bar under `ForwardFill`.
    Missing,
    /// Rows dropped under the `Skip` policy.
    MissingSkipped,
    /// Rows completed from the previous bar under `ForwardFill`.
    MissingFilled,
    /// high below open, close or low.
    HighBelow,
    /// low above open or close.
    LowAbove,
    NegativeVolume,
    /// Close-to-close log return beyond the robust z-score threshold (splits, bad ticks).
    ReturnOutlier,
    /// Consecutive closes a power of ten apart (10x, 0.1x, 100x ...): most often a
    /// price divisor or unit mix-up in the file, not a market move.
    PriceScaleJump,
    /// Rows not in time order (sorted on import); `rows` are the lines breaking the file's order.
    Unsorted,
    DuplicateTimestamp,
    /// A block of consecutive bars repeated with identical OHLCV under other timestamps.
    DuplicateBars,
    ZeroVolume,
    /// After the injected `now`.
    FutureTimestamp,
    /// Bars missing where the calendar expects trading.
    Gap,
    /// A bar whose interval lies outside the calendar's trading time.
    OutsideSession,
}

/// One finding: a kind of defect and every source line showing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub layer: Layer,
    pub severity: Severity,
    pub code: FindingCode,
    pub message: String,
    /// 1-based line numbers of the source file, ascending.
    pub rows: Vec<u64>,
}

/// How a hole between two consecutive bars was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GapVerdict {
    /// The market was closed for every missing interval.
    Closed,
    /// Missing bars in trading time, but no more than the tolerance (e.g. no-trade minutes).
    Tolerated,
    /// Reported as a gap.
    Reported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Line of the bar before and after the hole.
    pub before_line: u64,
    pub after_line: u64,
    pub from: TimestampNs,
    pub to: TimestampNs,
    /// Intervals without a bar.
    pub missing_intervals: u64,
    /// Of those, the ones the calendar expected a bar for.
    pub expected_missing: u64,
    pub verdict: GapVerdict,
}

/// Direction of time in the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceOrder {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityStats {
    pub lines_read: u64,
    pub rows_imported: u64,
    pub rows_skipped: u64,
    pub rows_filled: u64,
    pub errors: u64,
    pub warnings: u64,
    pub source_order: SourceOrder,
    pub sorted_on_import: bool,
    /// Bar interval, given or inferred (most frequent step).
    pub timeframe_ns: i64,
    pub outliers: u64,
    pub duplicate_bar_rows: u64,
    pub zero_volume_bars: u64,
    pub gaps_reported: u64,
    pub gaps_closed: u64,
    pub gaps_tolerated: u64,
    /// Median and MAD of the close-to-close log returns the outlier layer used.
    pub return_median: f64,
    pub return_mad: f64,
}

/// Everything validation found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    pub findings: Vec<Finding>,
    pub gaps: Vec<Gap>,
    pub stats: QualityStats,
}

impl QualityReport {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn finding(&self, code: FindingCode) -> Option<&Finding> {
        self.findings.iter().find(|f| f.code == code)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Settings of the validation layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationOptions {
    /// Robust z-score (|r - median| / (1.4826 MAD)) above which a return is an outlier.
    pub outlier_z: f64,
    pub calendar: Calendar,
    pub label: BarLabel,
    /// Holes with at most this many expected-but-missing bars are tolerated (0 = report all).
    pub gap_tolerance_bars: u64,
    /// Shortest block of repeated bars reported as duplicates. Thin markets repeat single
    /// bars by chance (the CME sample has 402 such pairs); repeated blocks are feed faults.
    pub duplicate_run_min: usize,
    /// Timestamps after this are errors; injected, never read from the clock here.
    pub now: TimestampNs,
    /// Bar interval; inferred from the data when `None`.
    pub timeframe_ns: Option<i64>,
}

impl ValidationOptions {
    pub fn new(now: TimestampNs) -> Self {
        Self {
            outlier_z: 20.0,
            calendar: Calendar::AlwaysOpen,
            label: BarLabel::Open,
            gap_tolerance_bars: 0,
            duplicate_run_min: 3,
            now,
            timeframe_ns: None,
        }
    }
}

/// The validated, time-sorted bars with their source lines, and the report.
#[derive(Debug, Clone)]
pub struct Validated {
    pub bars: Bars,
    /// Source line of each bar.
    pub lines: Vec<u64>,
    pub report: QualityReport,
}

/// `Some(k)` when a log price ratio is within a factor 10^0.1 (about 1.26)
/// of 10^k, k != 0: a scaling slip (a missing price divisor, cents for
/// dollars) rather than a market move; splits like 7:1 or 2:1 are not.
pub fn power_of_ten_apart(ln_ratio: f64) -> Option<i32> {
    let decades = ln_ratio / std::f64::consts::LN_10;
    let k = decades.round();
    #[allow(clippy::cast_possible_truncation, reason = "k is a small whole number")]
    (k != 0.0 && (decades - k).abs() <= 0.1 && k.is_finite()).then_some(k as i32)
}

/// A finding (rows sorted and deduplicated).
pub fn finding(
    layer: Layer,
    severity: Severity,
    code: FindingCode,
    message: String,
    mut rows: Vec<u64>,
) -> Finding {
    rows.sort_unstable();
    rows.dedup();
    Finding {
        layer,
        severity,
        code,
        message,
        rows,
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn list(rows: &[u64]) -> String {
    let shown: Vec<String> = rows.iter().take(10).map(u64::to_string).collect();
    if rows.len() > 10 {
        format!("{}, ...", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Runs every layer over a parsed table.
pub fn validate(raw: RawTable, missing: MissingPolicy, opts: &ValidationOptions) -> Validated {
    let mut findings = raw.findings;
    let mut rows = raw.rows;

    // Temporal: the file's own order, before sorting.
    let (mut up, mut down) = (0u64, 0u64);
    let with_ts: Vec<&RawRow> = rows.iter().filter(|r| r.ts.is_some()).collect();
    for w in with_ts.windows(2) {
        match w[1].ts.cmp(&w[0].ts) {
            std::cmp::Ordering::Greater => up += 1,
            std::cmp::Ordering::Less => down += 1,
            std::cmp::Ordering::Equal => {}
        }
    }
    let source_order = if down > up {
        SourceOrder::Descending
    } else {
        SourceOrder::Ascending
    };
    let breaks: Vec<u64> = with_ts
        .windows(2)
        .filter(|w| match source_order {
            SourceOrder::Ascending => w[1].ts < w[0].ts,
            SourceOrder::Descending => w[1].ts > w[0].ts,
        })
        .map(|w| w[1].line)
        .collect();
    let sorted_on_import = down > 0;
    if sorted_on_import {
        let order = match source_order {
            SourceOrder::Ascending => "ascending",
            SourceOrder::Descending => "descending (newest first)",
        };
        findings.push(finding(
            Layer::Temporal,
            Severity::Warning,
            FindingCode::Unsorted,
            format!(
                "rows not in ascending time order (sorted on import): file is {order}, {} line(s) break that order: {}",
                breaks.len(),
                list(&breaks)
            ),
            breaks,
        ));
    }
    // Stable: equal timestamps keep file order, so duplicates are reported in file order.
    rows.sort_by_key(|r| r.ts);

    // Schema: missing cells.
    let incomplete: Vec<u64> = rows
        .iter()
        .filter(|r| r.ts.is_none() || r.values.iter().any(Option::is_none))
        .map(|r| r.line)
        .collect();
    let mut rows_skipped = 0u64;
    let mut rows_filled = 0u64;
    if !incomplete.is_empty() {
        match missing {
            MissingPolicy::Fail => findings.push(finding(
                Layer::Schema,
                Severity::Error,
                FindingCode::Missing,
                format!(
                    "{} line(s) with missing values: {}",
                    incomplete.len(),
                    list(&incomplete)
                ),
                incomplete,
            )),
            MissingPolicy::Skip => {
                rows.retain(|r| r.ts.is_some() && r.values.iter().all(Option::is_some));
                rows_skipped = incomplete.len() as u64;
                findings.push(finding(
                    Layer::Schema,
                    Severity::Warning,
                    FindingCode::MissingSkipped,
                    format!(
                        "{} line(s) with missing values skipped: {}",
                        incomplete.len(),
                        list(&incomplete)
                    ),
                    incomplete,
                ));
            }
            MissingPolicy::ForwardFill => {
                let mut unfillable = Vec::new();
                let mut filled = Vec::new();
                let mut prev_close: Option<i64> = None;
                for r in rows.iter_mut() {
                    if r.ts.is_none() {
                        unfillable.push(r.line);
                        continue;
                    }
                    let needs = r.values.iter().any(Option::is_none);
                    if needs {
                        match prev_close {
                            Some(c) => {
                                for k in 0..4 {
                                    r.values[k].get_or_insert(c);
                                }
                                r.values[4].get_or_insert(0);
                                filled.push(r.line);
                            }
                            None => unfillable.push(r.line),
                        }
                    }
                    prev_close = r.values[3].or(prev_close);
                }
                rows_filled = filled.len() as u64;
                if !filled.is_empty() {
                    findings.push(finding(
                        Layer::Schema,
                        Severity::Warning,
                        FindingCode::MissingFilled,
                        format!(
                            "{} line(s) forward-filled from the previous bar: {}",
                            filled.len(),
                            list(&filled)
                        ),
                        filled,
                    ));
                }
                if !unfillable.is_empty() {
                    findings.push(finding(
                        Layer::Schema,
                        Severity::Error,
                        FindingCode::Missing,
                        format!(
                            "{} line(s) cannot be forward-filled (no timestamp or no earlier bar): {}",
                            unfillable.len(),
                            list(&unfillable)
                        ),
                        unfillable,
                    ));
                }
            }
        }
    }
    let complete: Vec<(u64, TimestampNs, [i64; 5])> = rows
        .iter()
        .filter_map(|r| {
            let ts = r.ts?;
            let v = [
                r.values[0]?,
                r.values[1]?,
                r.values[2]?,
                r.values[3]?,
                r.values[4]?,
            ];
            Some((r.line, ts, v))
        })
        .collect();

    // Relations.
    let (mut high_below, mut low_above, mut neg_vol) = (Vec::new(), Vec::new(), Vec::new());
    for &(line, _, [o, h, l, c, v]) in &complete {
        if h < o || h < c || h < l {
            high_below.push(line);
        }
        if l > o || l > c {
            low_above.push(line);
        }
        if v < 0 {
            neg_vol.push(line);
        }
    }
    for (rows, code, what) in [
        (
            high_below,
            FindingCode::HighBelow,
            "high below open, close or low",
        ),
        (low_above, FindingCode::LowAbove, "low above open or close"),
        (neg_vol, FindingCode::NegativeVolume, "negative volume"),
    ] {
        if !rows.is_empty() {
            findings.push(finding(
                Layer::Relations,
                Severity::Error,
                code,
                format!("{what} on {} line(s): {}", rows.len(), list(&rows)),
                rows,
            ));
        }
    }

    // Outliers: robust z-score of close-to-close log returns. f64 is fine here: a statistic, not a price.
    let returns: Vec<(u64, TimestampNs, f64)> = complete
        .windows(2)
        .filter(|w| w[0].2[3] > 0 && w[1].2[3] > 0)
        .map(|w| (w[1].0, w[1].1, (w[1].2[3] as f64 / w[0].2[3] as f64).ln()))
        .collect();
    let mut r: Vec<f64> = returns.iter().map(|x| x.2).collect();
    let med = median(&mut r);
    let mut dev: Vec<f64> = returns.iter().map(|x| (x.2 - med).abs()).collect();
    let mad = median(&mut dev);
    let mut outliers = Vec::new();
    let mut outlier_text = Vec::new();
    if mad > 0.0 {
        for &(line, ts, ret) in &returns {
            let z = (ret - med).abs() / (1.4826 * mad);
            if z > opts.outlier_z {
                outliers.push(line);
                if outlier_text.len() < 10 {
                    outlier_text.push(format!(
                        "line {line} {} return {:+.1}% z={z:.1}",
                        format_ns(ts),
                        (ret.exp() - 1.0) * 100.0
                    ));
                }
            }
        }
    }
    let n_outliers = outliers.len() as u64;
    if !outliers.is_empty() {
        findings.push(finding(
            Layer::Outliers,
            Severity::Warning,
            FindingCode::ReturnOutlier,
            format!(
                "{} return(s) beyond robust z {} (splits, bad ticks): {}",
                outliers.len(),
                opts.outlier_z,
                outlier_text.join("; ")
            ),
            outliers,
        ));
    }

    // Plausibility: a close-to-close ratio within a factor 10^0.1 (about 1.26) of
    // 10^k, k != 0, reads as a scaling slip (a missing price divisor, cents for
    // dollars). Splits like 7:1 or 2:1 are not powers of ten and stay outliers.
    let mut jumps = Vec::new();
    let mut jump_text = Vec::new();
    for &(line, ts, ret) in &returns {
        if power_of_ten_apart(ret).is_some() {
            jumps.push(line);
            if jump_text.len() < 10 {
                jump_text.push(format!(
                    "line {line} {} close x{:.3}",
                    format_ns(ts),
                    ret.exp()
                ));
            }
        }
    }
    if !jumps.is_empty() {
        findings.push(finding(
            Layer::Outliers,
            Severity::Warning,
            FindingCode::PriceScaleJump,
            format!(
                "{} close(s) a power of ten away from the previous one (a price divisor or unit slip?): {}",
                jumps.len(),
                jump_text.join("; ")
            ),
            jumps,
        ));
    }

    // Temporal: duplicates, repeated blocks, zero volume, future.
    let mut dup_ts = Vec::new();
    for w in complete.windows(2) {
        if w[0].1 == w[1].1 {
            dup_ts.push(w[0].0);
            dup_ts.push(w[1].0);
        }
    }
    if !dup_ts.is_empty() {
        findings.push(finding(
            Layer::Temporal,
            Severity::Error,
            FindingCode::DuplicateTimestamp,
            format!("duplicate timestamps on line(s) {}", list(&dup_ts)),
            dup_ts,
        ));
    }
    let dup_rows = duplicate_blocks(&complete, opts.duplicate_run_min.max(1));
    let n_dup = dup_rows.len() as u64;
    if !dup_rows.is_empty() {
        findings.push(finding(
            Layer::Temporal,
            Severity::Warning,
            FindingCode::DuplicateBars,
            format!(
                "{} line(s) repeat a block of at least {} bars with identical OHLCV under other timestamps: {}",
                dup_rows.len(),
                opts.duplicate_run_min,
                list(&dup_rows)
            ),
            dup_rows,
        ));
    }
    let zero: Vec<u64> = complete
        .iter()
        .filter(|r| r.2[4] == 0)
        .map(|r| r.0)
        .collect();
    let n_zero = zero.len() as u64;
    if !zero.is_empty() {
        findings.push(finding(
            Layer::Temporal,
            Severity::Warning,
            FindingCode::ZeroVolume,
            format!("{} bar(s) with zero volume: {}", zero.len(), list(&zero)),
            zero,
        ));
    }
    let future: Vec<u64> = complete
        .iter()
        .filter(|r| r.1 > opts.now)
        .map(|r| r.0)
        .collect();
    if !future.is_empty() {
        findings.push(finding(
            Layer::Temporal,
            Severity::Error,
            FindingCode::FutureTimestamp,
            format!(
                "{} bar(s) after {}: {}",
                future.len(),
                format_ns(opts.now),
                list(&future)
            ),
            future,
        ));
    }

    // Temporal: calendar.
    let timeframe = opts
        .timeframe_ns
        .unwrap_or_else(|| infer_timeframe(&complete));
    let mut gaps = Vec::new();
    let mut outside = Vec::new();
    if timeframe > 0 {
        for &(line, ts, _) in &complete {
            if !opts.calendar.expects_bar(ts, timeframe, opts.label) {
                outside.push(line);
            }
        }
        for w in complete.windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            let intervals = ((b - a) / timeframe - 1).max(0) as u64;
            if intervals == 0 {
                continue;
            }
            let expected = (1..=intervals as i64)
                .filter(|k| {
                    opts.calendar
                        .expects_bar(a + k * timeframe, timeframe, opts.label)
                })
                .count() as u64;
            let verdict = if expected == 0 {
                GapVerdict::Closed
            } else if expected <= opts.gap_tolerance_bars {
                GapVerdict::Tolerated
            } else {
                GapVerdict::Reported
            };
            gaps.push(Gap {
                before_line: w[0].0,
                after_line: w[1].0,
                from: a,
                to: b,
                missing_intervals: intervals,
                expected_missing: expected,
                verdict,
            });
        }
    }
    let count = |v: GapVerdict| gaps.iter().filter(|g| g.verdict == v).count() as u64;
    let (gaps_reported, gaps_closed, gaps_tolerated) = (
        count(GapVerdict::Reported),
        count(GapVerdict::Closed),
        count(GapVerdict::Tolerated),
    );
    if gaps_reported > 0 {
        let reported: Vec<&Gap> = gaps
            .iter()
            .filter(|g| g.verdict == GapVerdict::Reported)
            .collect();
        let text: Vec<String> = reported
            .iter()
            .take(5)
            .map(|g| {
                format!(
                    "{} .. {} ({} bar(s) missing)",
                    format_ns(g.from),
                    format_ns(g.to),
                    g.expected_missing
                )
            })
            .collect();
        findings.push(finding(
            Layer::Temporal,
            Severity::Warning,
            FindingCode::Gap,
            format!(
                "{gaps_reported} gap(s) in trading time, first: {}",
                text.join("; ")
            ),
            reported.iter().map(|g| g.after_line).collect(),
        ));
    }
    if !outside.is_empty() {
        findings.push(finding(
            Layer::Temporal,
            Severity::Warning,
            FindingCode::OutsideSession,
            format!(
                "{} bar(s) outside the calendar's trading time: {}",
                outside.len(),
                list(&outside)
            ),
            outside,
        ));
    }

    let mut bars = Bars::with_scales(raw.price_scale, raw.volume_scale);
    let mut lines = Vec::with_capacity(complete.len());
    for &(line, ts, v) in &complete {
        bars.push(ts, v);
        lines.push(line);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count() as u64;
    let warnings = findings.len() as u64 - errors;
    Validated {
        report: QualityReport {
            findings,
            gaps,
            stats: QualityStats {
                lines_read: raw.lines_read,
                rows_imported: bars.len() as u64,
                rows_skipped,
                rows_filled,
                errors,
                warnings,
                source_order,
                sorted_on_import,
                timeframe_ns: timeframe,
                outliers: n_outliers,
                duplicate_bar_rows: n_dup,
                zero_volume_bars: n_zero,
                gaps_reported,
                gaps_closed,
                gaps_tolerated,
                return_median: med,
                return_mad: mad,
            },
        },
        bars,
        lines,
    }
}

/// The most frequent positive step between consecutive bars (ties: the smaller).
pub fn infer_timeframe(rows: &[(u64, TimestampNs, [i64; 5])]) -> i64 {
    let mut counts: HashMap<i64, u64> = HashMap::new();
    for w in rows.windows(2) {
        let d = w[1].1 - w[0].1;
        if d > 0 {
            *counts.entry(d).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(d, _)| d)
        .unwrap_or(0)
}

/// Lines of bars (volume > 0) belonging to a block of at least `min_run` consecutive bars
/// whose OHLCV repeats, bar for bar, later in the series.
fn duplicate_blocks(rows: &[(u64, TimestampNs, [i64; 5])], min_run: usize) -> Vec<u64> {
    let mut by_value: HashMap<[i64; 5], Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.2[4] > 0 {
            by_value.entry(r.2).or_default().push(i);
        }
    }
    let same = |i: usize, j: usize| rows[i].2 == rows[j].2 && rows[i].2[4] > 0;
    let mut flagged = Vec::new();
    for idx in by_value.values().filter(|v| v.len() > 1) {
        for (p, &a) in idx.iter().enumerate() {
            for &c in &idx[p + 1..] {
                // Only maximal runs: the pair before must not match.
                if a > 0 && same(a - 1, c - 1) {
                    continue;
                }
                let mut n = 0;
                while a + n < c && c + n < rows.len() && same(a + n, c + n) {
                    n += 1;
                }
                if n >= min_run {
                    for m in 0..n {
                        flagged.push(rows[a + m].0);
                        flagged.push(rows[c + m].0);
                    }
                }
            }
        }
    }
    flagged.sort_unstable();
    flagged.dedup();
    flagged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{CsvOptions, parse_csv};

    const M: i64 = 60_000_000_000;

    fn run(text: &str, missing: MissingPolicy, opts: &ValidationOptions) -> Validated {
        let raw = parse_csv(
            text.as_bytes(),
            "t",
            &CsvOptions {
                missing,
                ..CsvOptions::default()
            },
        )
        .unwrap();
        validate(raw, missing, opts)
    }

    fn now() -> i64 {
        4_000_000_000 * 1_000_000_000
    }

    #[test]
    fn relations_are_errors_with_lines() {
        let text = "timestamp,open,high,low,close,volume\n\
            2024-01-01T00:00:00Z,10,11,9,10,1\n\
            2024-01-01T00:01:00Z,10,9.5,9,10,1\n\
            2024-01-01T00:02:00Z,10,11,10.5,10,1\n\
            2024-01-01T00:03:00Z,10,11,9,10,-1\n";
        let v = run(text, MissingPolicy::Fail, &ValidationOptions::new(now()));
        assert!(v.report.has_errors());
        assert_eq!(
            v.report.finding(FindingCode::HighBelow).unwrap().rows,
            vec![3]
        );
        assert_eq!(
            v.report.finding(FindingCode::LowAbove).unwrap().rows,
            vec![4]
        );
        assert_eq!(
            v.report.finding(FindingCode::NegativeVolume).unwrap().rows,
            vec![5]
        );
    }

    #[test]
    fn missing_policies() {
        let text = "timestamp,open,high,low,close,volume\n\
            2024-01-01T00:00:00Z,10,11,9,10,1\n\
            2024-01-01T00:01:00Z,,,,,\n\
            2024-01-01T00:02:00Z,10,11,9,10.5,1\n";
        let mut o = ValidationOptions::new(now());
        o.timeframe_ns = Some(M);
        let fail = run(text, MissingPolicy::Fail, &o);
        assert_eq!(
            fail.report.finding(FindingCode::Missing).unwrap().rows,
            vec![3]
        );
        assert!(fail.report.has_errors());
        let skip = run(text, MissingPolicy::Skip, &o);
        assert!(!skip.report.has_errors());
        assert_eq!(skip.bars.len(), 2);
        assert_eq!(skip.report.stats.rows_skipped, 1);
        assert_eq!(skip.report.finding(FindingCode::Gap).unwrap().rows, vec![4]);
        let ff = run(text, MissingPolicy::ForwardFill, &o);
        assert!(!ff.report.has_errors());
        assert_eq!(ff.bars.len(), 3);
        assert_eq!(
            (ff.bars.open[1], ff.bars.close[1], ff.bars.volume[1]),
            (100, 100, 0)
        );
        assert_eq!(
            ff.report.finding(FindingCode::MissingFilled).unwrap().rows,
            vec![3]
        );
    }

    #[test]
    fn order_duplicates_future_and_gaps() {
        let text = "timestamp,open,high,low,close,volume\n\
            2024-01-01T00:09:00Z,10,11,9,10,1\n\
            2024-01-01T00:03:00Z,10,11,9,10,2\n\
            2024-01-01T00:01:00Z,10,11,9,10,3\n\
            2024-01-01T00:02:00Z,10,11,9,10,4\n\
            2024-01-01T00:00:00Z,10,11,9,10,5\n\
            2024-01-01T00:00:00Z,10,11,9,10,6\n";
        let mut o = ValidationOptions::new(
            crate::time::parse_timestamp(
                "2024-01-01T00:05:00Z",
                &crate::time::TimeFormat::Iso8601,
                crate::time::Zone::UTC,
            )
            .unwrap(),
        );
        o.timeframe_ns = Some(M);
        let v = run(text, MissingPolicy::Fail, &o);
        let r = &v.report;
        assert_eq!(r.stats.source_order, SourceOrder::Descending);
        assert_eq!(r.finding(FindingCode::Unsorted).unwrap().rows, vec![5]);
        assert_eq!(
            r.finding(FindingCode::DuplicateTimestamp).unwrap().rows,
            vec![6, 7]
        );
        assert_eq!(
            r.finding(FindingCode::FutureTimestamp).unwrap().rows,
            vec![2]
        );
        assert_eq!(r.finding(FindingCode::Gap).unwrap().rows, vec![2]);
        assert_eq!(r.gaps[0].missing_intervals, 5);
        assert_eq!(v.lines, vec![6, 7, 4, 5, 3, 2]);
    }

    #[test]
    fn repeated_blocks_not_single_repeats() {
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        let vals = [
            (1, 1),
            (2, 2),
            (3, 3),
            (9, 9),
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (4, 4),
        ];
        for (i, (p, v)) in vals.iter().enumerate() {
            text.push_str(&format!("2024-01-01T00:0{i}:00Z,{p},{p},{p},{p},{v}\n"));
        }
        let v = run(&text, MissingPolicy::Fail, &ValidationOptions::new(now()));
        // Lines 2-4 repeat as 6-8; the single repeat 9/10 (a run of 1, then 2 with overlap stop) is not a block of 3.
        assert_eq!(
            v.report.finding(FindingCode::DuplicateBars).unwrap().rows,
            vec![2, 3, 4, 6, 7, 8]
        );
    }

    #[test]
    fn power_of_ten_jumps_warn_and_splits_do_not() {
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        // 100 -> 10.2 (a tenth: warned), back to 101 (x10: warned),
        // then a 7:1 split 101 -> 14.5 (not a power of ten: no warning).
        for (i, c) in ["100", "100.5", "10.2", "101", "100", "14.5", "14.6"]
            .iter()
            .enumerate()
        {
            text.push_str(&format!(
                "2024-01-{:02}T00:00:00Z,{c},{c},{c},{c},1\n",
                i + 1
            ));
        }
        let v = run(&text, MissingPolicy::Fail, &ValidationOptions::new(now()));
        let f = v.report.finding(FindingCode::PriceScaleJump).unwrap();
        assert_eq!(f.rows, vec![4, 5]);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("line 4"), "{}", f.message);
    }

    #[test]
    fn outliers_by_robust_z() {
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for i in 0..60 {
            p *= if i % 2 == 0 { 1.01 } else { 0.995 };
            let c = if i == 40 { p / 2.0 } else { p };
            text.push_str(&format!(
                "2024-01-{:02}T{:02}:00:00Z,{c:.2},{:.2},{:.2},{c:.2},1\n",
                1 + i / 24,
                i % 24,
                c * 1.1,
                c * 0.9
            ));
        }
        let v = run(&text, MissingPolicy::Fail, &ValidationOptions::new(now()));
        // The halving (line 42) and the recovery after it (line 43).
        assert_eq!(
            v.report.finding(FindingCode::ReturnOutlier).unwrap().rows,
            vec![42, 43]
        );
    }
}
