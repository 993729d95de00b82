//! A self-contained HTML report: inline CSS and SVG, no scripts, no fonts,
//! nothing fetched, so it opens anywhere and can be attached to a result.

use std::fmt::Write as _;

use crate::drawdown::drawdown_series;
use crate::metrics::{EquityPoint, Metrics, UnixNanos};
use crate::trades::{Side, Trade};

/// What the report shows. Metrics are computed by the caller (usually with
/// [`crate::compute`]) so that the report prints exactly what was stored.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// Title of the page (strategy, data set, parameters): any text, escaped.
    pub title: &'a str,
    /// The equity curve.
    pub equity: &'a [EquityPoint],
    /// Closed trades, listed in the given order.
    pub trades: &'a [Trade],
    /// The metrics of the summary table.
    pub metrics: &'a Metrics,
    /// Periods labelled (by regime, say): coloured bands behind the equity
    /// curve and a table of the metrics per label. `None`: neither.
    pub breakdown: Option<Breakdown<'a>>,
    /// Parts of the whole (the strategies of a portfolio): their equity
    /// curves on one chart and their metrics side by side. Empty: neither.
    pub parts: &'a [Part<'a>],
}

/// One part of a whole, e.g. one strategy of a portfolio.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// Its name (escaped).
    pub name: &'a str,
    /// A CSS colour for its line (`#rrggbb`).
    pub color: &'a str,
    /// Its equity curve.
    pub equity: &'a [EquityPoint],
    /// Its metrics.
    pub metrics: &'a Metrics,
}

/// One label of a [`Breakdown`]: its name, colour and metrics.
#[derive(Debug, Clone, Copy)]
pub struct LabelClass<'a> {
    /// Shown in the legend and the table (escaped).
    pub name: &'a str,
    /// A CSS colour for its bands (`#rrggbb`).
    pub color: &'a str,
    /// The metrics of the periods carrying this label (usually from [`crate::breakdown`]).
    pub metrics: &'a Metrics,
}

/// Every period's label, for the report's bands and per-label table.
#[derive(Debug, Clone, Copy)]
pub struct Breakdown<'a> {
    /// What the labels are, e.g. `regime` (escaped).
    pub title: &'a str,
    /// The labels, in table order.
    pub classes: &'a [LabelClass<'a>],
    /// One index into `classes` per period (`equity.len() - 1` of them):
    /// period `i` runs from mark `i` to mark `i + 1`.
    pub labels: &'a [usize],
}

pub(crate) const WIDTH: f64 = 900.0;
pub(crate) const HEIGHT: f64 = 260.0;
pub(crate) const PAD_L: f64 = 70.0;
pub(crate) const PAD_R: f64 = 10.0;
pub(crate) const PAD_T: f64 = 10.0;
pub(crate) const PAD_B: f64 = 30.0;
/// Above this many points a line chart keeps each bucket's first, min, max
/// and last value: the shape survives and the file stays small.
const MAX_LINE_POINTS: usize = 4_000;
const HISTOGRAM_BINS: usize = 50;

pub(crate) const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d2430;background:#fff}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;font-size:.85rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #e3e6eb;text-align:right}\
th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}\
svg{display:block;max-width:100%;height:auto;background:#fafbfc;border:1px solid #e3e6eb}\
.axis{font-size:11px;fill:#5b6573}.pos{color:#1a7f37}.neg{color:#c62828}";

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders the report: summary metrics, equity curve, drawdown, histogram of
/// period returns and the trade list.
pub fn render_html(input: &ReportInput<'_>) -> String {
    let title = escape_html(input.title);
    let mut html = String::with_capacity(64 * 1024 + input.trades.len() * 256);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    if let (Some(first), Some(last)) = (input.equity.first(), input.equity.last()) {
        let _ = writeln!(
            html,
            "<p>{} to {}, {} points</p>",
            format_ts(first.ts),
            format_ts(last.ts),
            input.equity.len()
        );
    }
    html.push_str("<h2>Summary</h2>\n");
    summary_table(&mut html, input.metrics);

    let ts: Vec<UnixNanos> = input.equity.iter().map(|p| p.ts).collect();
    let values: Vec<f64> = input.equity.iter().map(|p| p.equity).collect();
    html.push_str("<h2>Equity</h2>\n");
    let bands = input
        .breakdown
        .filter(|b| b.labels.len() + 1 == input.equity.len());
    line_chart(
        &mut html,
        "equity",
        &ts,
        &values,
        "#1f5fbf",
        false,
        bands.as_ref(),
        |v| format!("{v:.0}"),
    );
    if let Some(b) = &bands {
        legend(&mut html, b);
    }
    if let Some(b) = &input.breakdown {
        let _ = writeln!(html, "<h2>By {}</h2>", escape_html(b.title));
        breakdown_table(&mut html, b);
    }
    if !input.parts.is_empty() {
        parts_section(&mut html, input.parts, input.equity);
    }
    html.push_str("<h2>Drawdown</h2>\n");
    let dd = drawdown_series(&values);
    line_chart(
        &mut html,
        "drawdown",
        &ts,
        &dd,
        "#c62828",
        true,
        None,
        |v| format!("{:.1}%", v * 100.0),
    );
    html.push_str("<h2>Distribution of period returns</h2>\n");
    let returns: Vec<f64> = values.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    histogram(&mut html, &returns);
    let _ = writeln!(html, "<h2>Trades ({})</h2>", input.trades.len());
    trade_table(&mut html, input.trades);
    html.push_str("</body>\n</html>\n");
    html
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

fn num(v: f64) -> String {
    format!("{v:.4}")
}

/// A duration in the unit that fits (`1.5 min`, `5 h`, `3.2 d`).
fn duration(nanos: f64) -> String {
    crate::annualise::format_duration(nanos)
}

fn summary_table(html: &mut String, m: &Metrics) {
    let t = &m.trades;
    let rows: Vec<(&str, String)> = vec![
        ("Periods", m.periods.to_string()),
        ("Total return", pct(m.total_return)),
        ("CAGR", pct(m.cagr)),
        ("Annual volatility", opt(m.annual_volatility, pct)),
        ("Sharpe", opt(m.sharpe, num)),
        ("Sortino", opt(m.sortino, num)),
        ("Calmar", opt(m.calmar, num)),
        ("Max drawdown", pct(m.drawdown.max_drawdown)),
        (
            "Max drawdown duration",
            format!(
                "{} periods ({}){}",
                m.drawdown.duration_periods,
                duration(m.drawdown.duration_nanos as f64),
                if m.drawdown.recovery_index.is_none() && m.drawdown.max_drawdown < 0.0 {
                    ", not recovered"
                } else {
                    ""
                }
            ),
        ),
        (
            "Longest drawdown",
            format!(
                "{} periods ({})",
                m.drawdown.longest_duration_periods,
                duration(m.drawdown.longest_duration_nanos as f64)
            ),
        ),
        ("VaR 95 historical", pct(m.tail.historical_95.var)),
        ("CVaR 95 historical", pct(m.tail.historical_95.cvar)),
        ("VaR 99 historical", pct(m.tail.historical_99.var)),
        ("CVaR 99 historical", pct(m.tail.historical_99.cvar)),
        ("VaR 95 normal", opt(m.tail.normal_95.map(|v| v.var), pct)),
        ("CVaR 95 normal", opt(m.tail.normal_95.map(|v| v.cvar), pct)),
        ("VaR 99 normal", opt(m.tail.normal_99.map(|v| v.var), pct)),
        ("CVaR 99 normal", opt(m.tail.normal_99.map(|v| v.cvar), pct)),
        ("Exposure", opt(m.exposure, pct)),
        ("Turnover (per year)", format!("{:.2}x", m.turnover)),
        ("Trades", t.count.to_string()),
        ("Win rate", opt(t.win_rate, pct)),
        ("Profit factor", opt(t.profit_factor, num)),
        ("Average win", opt(t.avg_win, |v| format!("{v:.2}"))),
        ("Average loss", opt(t.avg_loss, |v| format!("{v:.2}"))),
        ("Expectancy", opt(t.expectancy, |v| format!("{v:.2}"))),
        ("Net PnL", format!("{:.2}", t.net_pnl)),
        ("Fees", format!("{:.2}", t.total_fees)),
        ("Average holding time", opt(t.avg_holding_nanos, duration)),
        (
            "Mean MAE",
            opt(t.mae.map(|s| s.mean), |v| format!("{v:.2}")),
        ),
        (
            "Worst MAE",
            opt(t.mae.map(|s| s.min), |v| format!("{v:.2}")),
        ),
        (
            "Mean MFE",
            opt(t.mfe.map(|s| s.mean), |v| format!("{v:.2}")),
        ),
        ("Best MFE", opt(t.mfe.map(|s| s.max), |v| format!("{v:.2}"))),
    ];
    html.push_str("<table class=\"summary\">\n<tr><th>metric</th><th>value</th></tr>\n");
    for (name, value) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape_html(name),
            escape_html(&value)
        );
    }
    html.push_str("</table>\n");
}

/// Keeps the first, min, max and last point of each bucket, in time order.
fn downsample(ts: &[UnixNanos], values: &[f64]) -> Vec<(UnixNanos, f64)> {
    let n = values.len();
    if n <= MAX_LINE_POINTS {
        return ts.iter().copied().zip(values.iter().copied()).collect();
    }
    let buckets = MAX_LINE_POINTS / 4;
    let mut out = Vec::with_capacity(MAX_LINE_POINTS);
    for b in 0..buckets {
        let lo = b * n / buckets;
        let hi = ((b + 1) * n / buckets).max(lo + 1);
        let mut keep = vec![lo, hi - 1];
        let slice = &values[lo..hi];
        let (mut imin, mut imax) = (0, 0);
        for (i, v) in slice.iter().enumerate() {
            if *v < slice[imin] {
                imin = i;
            }
            if *v > slice[imax] {
                imax = i;
            }
        }
        keep.extend([lo + imin, lo + imax]);
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|i| (ts[i], values[i])));
    }
    out
}

pub(crate) fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
        .map(|(lo, hi)| {
            if lo == hi {
                (lo - 1.0, hi + 1.0)
            } else {
                (lo, hi)
            }
        })
}

pub(crate) fn svg_open(html: &mut String, id: &str, label: &str) {
    let _ = writeln!(
        html,
        "<svg id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\" \
         role=\"img\" aria-label=\"{}\">",
        escape_html(label)
    );
}

#[allow(clippy::too_many_arguments, reason = "one private chart helper")]
pub(crate) fn line_chart(
    html: &mut String,
    id: &str,
    ts: &[UnixNanos],
    values: &[f64],
    color: &str,
    fill_to_top: bool,
    bands: Option<&Breakdown<'_>>,
    fmt_value: impl Fn(f64) -> String,
) {
    svg_open(html, id, id);
    let points = downsample(ts, values);
    let (Some(&(t0, _)), Some(&(t1, _))) = (points.first(), points.last()) else {
        html.push_str("<text x=\"10\" y=\"20\" class=\"axis\">no data</text>\n</svg>\n");
        return;
    };
    let Some((lo, hi)) = finite_range(points.iter().map(|p| p.1)) else {
        html.push_str("<text x=\"10\" y=\"20\" class=\"axis\">no data</text>\n</svg>\n");
        return;
    };
    let hi = if fill_to_top { hi.max(0.0) } else { hi };
    let span_t = (t1 - t0).max(1) as f64;
    let x = |t: UnixNanos| PAD_L + (t - t0) as f64 / span_t * (WIDTH - PAD_L - PAD_R);
    let y = |v: f64| PAD_T + (hi - v) / (hi - lo) * (HEIGHT - PAD_T - PAD_B);
    if let Some(b) = bands {
        band_rects(html, b, ts, &x);
    }
    let mut path = String::with_capacity(points.len() * 16);
    for (i, &(t, v)) in points.iter().filter(|p| p.1.is_finite()).enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { "L" },
            x(t),
            y(v)
        );
    }
    if fill_to_top {
        let _ = write!(
            path,
            "L{:.1},{:.1}L{:.1},{:.1}Z",
            x(t1),
            y(hi),
            x(t0),
            y(hi)
        );
        let _ = writeln!(
            html,
            "<path d=\"{path}\" fill=\"{color}\" fill-opacity=\"0.25\" stroke=\"{color}\" stroke-width=\"1\"/>"
        );
    } else {
        let _ = writeln!(
            html,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.2\"/>"
        );
    }
    axes(
        html,
        &fmt_value(hi),
        &fmt_value(lo),
        &format_ts(t0),
        &format_ts(t1),
    );
    html.push_str("</svg>\n");
}

/// One `<rect class="band">` per run of equal labels, behind the curve.
fn band_rects(
    html: &mut String,
    b: &Breakdown<'_>,
    ts: &[UnixNanos],
    x: &dyn Fn(UnixNanos) -> f64,
) {
    let top = PAD_T;
    let height = HEIGHT - PAD_T - PAD_B;
    let mut start = 0;
    while start < b.labels.len() {
        let label = b.labels[start];
        let mut end = start + 1;
        while end < b.labels.len() && b.labels[end] == label {
            end += 1;
        }
        // periods start..end run from mark `start` to mark `end`
        if let Some(class) = b.classes.get(label) {
            let (x0, x1) = (x(ts[start]), x(ts[end]));
            let _ = writeln!(
                html,
                "<rect class=\"band\" data-label=\"{name}\" x=\"{x0:.2}\" y=\"{top}\" \
                 width=\"{:.2}\" height=\"{height}\" fill=\"{}\" fill-opacity=\"0.22\">\
                 <title>{name}: {} to {}</title></rect>",
                (x1 - x0).max(0.05),
                escape_html(class.color),
                format_ts(ts[start]),
                format_ts(ts[end]),
                name = escape_html(class.name),
            );
        }
        start = end;
    }
}

fn legend(html: &mut String, b: &Breakdown<'_>) {
    html.push_str("<p class=\"legend\">");
    for c in b.classes {
        let _ = write!(
            html,
            "<span style=\"display:inline-block;width:.9em;height:.9em;background:{};opacity:.5;\
             margin:0 .3em 0 1em;vertical-align:middle\"></span>{}",
            escape_html(c.color),
            escape_html(c.name)
        );
    }
    html.push_str("</p>\n");
}

fn breakdown_table(html: &mut String, b: &Breakdown<'_>) {
    let total: usize = b.classes.iter().map(|c| c.metrics.periods).sum();
    let _ = writeln!(
        html,
        "<table class=\"breakdown\">\n<tr><th>{}</th><th>periods</th><th>time share</th>\
         <th>total return</th><th>annual volatility</th><th>Sharpe</th><th>max drawdown</th>\
         <th>exposure</th><th>trades entered</th><th>their win rate</th><th>their net PnL</th></tr>",
        escape_html(b.title)
    );
    for c in b.classes {
        let m = c.metrics;
        #[allow(clippy::cast_precision_loss, reason = "a share of counts")]
        let share = m.periods as f64 / total.max(1) as f64;
        let _ = writeln!(
            html,
            "<tr class=\"label\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            escape_html(c.name),
            m.periods,
            pct(share),
            pct(m.total_return),
            opt(m.annual_volatility, pct),
            opt(m.sharpe, num),
            pct(m.drawdown.max_drawdown),
            opt(m.exposure, pct),
            m.trades.count,
            opt(m.trades.win_rate, pct),
            m.trades.net_pnl,
        );
    }
    html.push_str("</table>\n");
}

/// The parts' equity curves (and the whole's, in black) on one chart, a
/// legend, and their metrics side by side.
fn parts_section(html: &mut String, parts: &[Part<'_>], whole: &[EquityPoint]) {
    html.push_str("<h2>Equity by strategy</h2>\n");
    svg_open(html, "parts", "equity by strategy");
    let lines: Vec<(&str, Vec<(UnixNanos, f64)>)> = std::iter::once(("#1d2430", whole))
        .chain(parts.iter().map(|p| (p.color, p.equity)))
        .map(|(c, e)| {
            let ts: Vec<UnixNanos> = e.iter().map(|p| p.ts).collect();
            let v: Vec<f64> = e.iter().map(|p| p.equity).collect();
            (c, downsample(&ts, &v))
        })
        .collect();
    let all = lines.iter().flat_map(|(_, l)| l.iter());
    let t0 = all.clone().map(|p| p.0).min();
    let t1 = all.clone().map(|p| p.0).max();
    let range = finite_range(all.map(|p| p.1));
    let (Some(t0), Some(t1), Some((lo, hi))) = (t0, t1, range) else {
        html.push_str("<text x=\"10\" y=\"20\" class=\"axis\">no data</text>\n</svg>\n");
        return;
    };
    #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
    let span_t = (t1 - t0).max(1) as f64;
    #[allow(clippy::cast_precision_loss, reason = "chart coordinates")]
    let x = |t: UnixNanos| PAD_L + (t - t0) as f64 / span_t * (WIDTH - PAD_L - PAD_R);
    let y = |v: f64| PAD_T + (hi - v) / (hi - lo).max(f64::MIN_POSITIVE) * (HEIGHT - PAD_T - PAD_B);
    for (color, points) in &lines {
        let mut path = String::with_capacity(points.len() * 16);
        for (i, &(t, v)) in points.iter().filter(|p| p.1.is_finite()).enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(t),
                y(v)
            );
        }
        let _ = writeln!(
            html,
            "<path class=\"part\" d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.1\"/>",
            escape_html(color)
        );
    }
    axes(
        html,
        &format!("{hi:.0}"),
        &format!("{lo:.0}"),
        &format_ts(t0),
        &format_ts(t1),
    );
    html.push_str("</svg>\n");
    html.push_str(
        "<p class=\"legend\"><span style=\"display:inline-block;width:.9em;height:.9em;\
                   background:#1d2430;margin:0 .3em 0 1em;vertical-align:middle\"></span>portfolio",
    );
    for p in parts {
        let _ = write!(
            html,
            "<span style=\"display:inline-block;width:.9em;height:.9em;background:{};\
             margin:0 .3em 0 1em;vertical-align:middle\"></span>{}",
            escape_html(p.color),
            escape_html(p.name)
        );
    }
    html.push_str("</p>\n");
    html.push_str(
        "<table class=\"parts\">\n<tr><th>strategy</th><th>total return</th><th>CAGR</th>\
         <th>annual volatility</th><th>Sharpe</th><th>max drawdown</th><th>exposure</th>\
         <th>trades</th><th>win rate</th><th>net PnL</th></tr>\n",
    );
    for p in parts {
        let m = p.metrics;
        let _ = writeln!(
            html,
            "<tr class=\"part\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            escape_html(p.name),
            pct(m.total_return),
            pct(m.cagr),
            opt(m.annual_volatility, pct),
            opt(m.sharpe, num),
            pct(m.drawdown.max_drawdown),
            opt(m.exposure, pct),
            m.trades.count,
            opt(m.trades.win_rate, pct),
            m.trades.net_pnl,
        );
    }
    html.push_str("</table>\n");
}

pub(crate) fn axes(html: &mut String, top: &str, bottom: &str, left: &str, right: &str) {
    let base = HEIGHT - PAD_B;
    let _ = writeln!(
        html,
        "<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{base}\" stroke=\"#8a94a3\"/>\
         <line x1=\"{PAD_L}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#8a94a3\"/>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{base}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{PAD_L}\" y=\"{}\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        WIDTH - PAD_R,
        PAD_L - 4.0,
        PAD_T + 10.0,
        escape_html(top),
        PAD_L - 4.0,
        escape_html(bottom),
        HEIGHT - 10.0,
        escape_html(left),
        WIDTH - PAD_R,
        HEIGHT - 10.0,
        escape_html(right),
    );
}

fn histogram(html: &mut String, returns: &[f64]) {
    svg_open(html, "returns-histogram", "histogram of period returns");
    let Some((lo, hi)) = finite_range(returns.iter().copied()) else {
        html.push_str("<text x=\"10\" y=\"20\" class=\"axis\">no data</text>\n</svg>\n");
        return;
    };
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let mut counts = [0usize; HISTOGRAM_BINS];
    for r in returns.iter().filter(|r| r.is_finite()) {
        let bin = (((r - lo) / width) as usize).min(HISTOGRAM_BINS - 1);
        counts[bin] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let plot_w = WIDTH - PAD_L - PAD_R;
    let plot_h = HEIGHT - PAD_T - PAD_B;
    let bar_w = plot_w / HISTOGRAM_BINS as f64;
    for (i, &c) in counts.iter().enumerate() {
        let h = c as f64 / max * plot_h;
        let left = lo + i as f64 * width;
        let fill = if left + width / 2.0 < 0.0 {
            "#c62828"
        } else {
            "#1a7f37"
        };
        let _ = writeln!(
            html,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\">\
             <title>{} to {}: {c}</title></rect>",
            PAD_L + i as f64 * bar_w,
            PAD_T + plot_h - h,
            (bar_w - 1.0).max(0.5),
            h,
            escape_html(&pct(left)),
            escape_html(&pct(left + width)),
        );
    }
    axes(html, &format!("{max:.0}"), "0", &pct(lo), &pct(hi));
    html.push_str("</svg>\n");
}

fn trade_table(html: &mut String, trades: &[Trade]) {
    html.push_str(
        "<table class=\"trades\">\n<tr><th>#</th><th>side</th><th>entry</th><th>exit</th>\
         <th>held</th><th>qty</th><th>entry price</th><th>exit price</th><th>PnL</th><th>fees</th>\
         <th>MAE</th><th>MFE</th></tr>\n",
    );
    for (i, t) in trades.iter().enumerate() {
        let side = match t.side {
            Side::Long => "long",
            Side::Short => "short",
        };
        let class = if t.pnl < 0.0 { "neg" } else { "pos" };
        let _ = writeln!(
            html,
            "<tr class=\"trade\"><td>{}</td><td>{side}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{:.4}</td><td>{:.4}</td><td class=\"{class}\">{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td></tr>",
            i + 1,
            format_ts(t.entry_ts),
            format_ts(t.exit_ts),
            duration(t.exit_ts.saturating_sub(t.entry_ts) as f64),
            t.qty,
            t.entry_price,
            t.exit_price,
            t.pnl,
            t.fees,
            t.mae,
            t.mfe,
        );
    }
    html.push_str("</table>\n");
}

/// `YYYY-MM-DD`, with ` HH:MM:SS` when not at midnight UTC.
pub(crate) fn format_ts(ts: UnixNanos) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if sod == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )
    }
}

/// Howard Hinnant's days-to-civil: proleptic Gregorian date of a day count
/// since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape_html("<a href=\"x\">Tom & Jerry's</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn formats_dates() {
        assert_eq!(format_ts(0), "1970-01-01");
        // 1998-01-02T00:00:00Z
        assert_eq!(format_ts(883_699_200 * 1_000_000_000), "1998-01-02");
        // 2024-02-29T13:05:09Z
        assert_eq!(
            format_ts(1_709_211_909 * 1_000_000_000),
            "2024-02-29 13:05:09"
        );
        assert_eq!(format_ts(-86_400 * 1_000_000_000), "1969-12-31");
    }

    #[test]
    fn downsample_keeps_extremes_and_order() {
        let n = 100_000;
        let ts: Vec<i64> = (0..n as i64).collect();
        let mut values: Vec<f64> = (0..n).map(|i| i as f64).collect();
        values[54_321] = -1e9;
        let out = downsample(&ts, &values);
        assert!(out.len() <= MAX_LINE_POINTS);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(out.iter().any(|p| p.1 == -1e9));
        assert_eq!(out.first().unwrap().0, 0);
        assert_eq!(out.last().unwrap().0, n as i64 - 1);
    }
}
