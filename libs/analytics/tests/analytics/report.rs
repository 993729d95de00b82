//! The HTML report: structure, escaping, and a sample written to disk.

use grodt_analytics::{
    Breakdown, LabelClass, MetricsConfig, PerformanceInput, ReportInput, breakdown, compute,
    render_html,
};

use crate::helpers::load;

fn sample_html(title: &str) -> (String, usize) {
    let g = load();
    let input = PerformanceInput {
        equity: &g.equity,
        positions: Some(&g.positions),
        trades: &g.trades,
    };
    let metrics = compute(&input, &MetricsConfig::equities_daily()).expect("valid golden input");
    let html = render_html(&ReportInput {
        title,
        equity: &g.equity,
        trades: &g.trades,
        metrics: &metrics,
        breakdown: None,
        parts: &[],
    });
    (html, g.trades.len())
}

#[test]
fn report_has_every_section_and_escapes_text() {
    let (html, trades) = sample_html("SPY <SMA 10/30> & \"whole\" shares");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for id in ["equity", "drawdown", "returns-histogram"] {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "chart {id} missing"
        );
    }
    assert_eq!(html.matches("<svg ").count(), 3);
    assert_eq!(html.matches("</svg>").count(), 3);
    assert_eq!(html.matches("<tr class=\"trade\">").count(), trades);
    assert!(html.contains("SPY &lt;SMA 10/30&gt; &amp; &quot;whole&quot; shares"));
    assert!(!html.contains("<SMA 10/30>"));
    // Self-contained: no scripts, no external resources.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src="));
    assert!(!html.contains("<link"));
    assert!(!html.contains("@import"));
    // The summary carries the published figures.
    assert!(html.contains("<td>Sharpe</td><td>0.2849</td>"));
    assert!(html.contains("<td>Max drawdown</td><td>-30.54%</td>"));
    assert!(html.contains("<td>Trades</td><td>101</td>"));
    // First trade row, from the published first fills.
    assert!(html.contains(
        "<td>1998-05-14</td><td>1998-05-18</td><td>4 d</td><td>896</td><td>111.5300</td><td>110.7200</td>"
    ));
    // Holding and drawdown times print in the unit that fits (days here).
    assert!(html.contains("<td>Average holding time</td><td>"));
    assert!(!html.contains(" days"));
}

#[test]
fn writes_a_sample_report() {
    let (html, _) = sample_html("SPY daily, SMA(10/30), whole shares");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spy_sma_report.html");
    std::fs::write(&path, &html).expect("write report");
    let back = std::fs::read_to_string(&path).expect("read report");
    assert_eq!(back.len(), html.len());
    // Small enough to attach to a result: the charts are downsampled paths.
    assert!(html.len() < 2_000_000, "report is {} bytes", html.len());
}

/// With a breakdown, the equity chart has one band per run of equal labels,
/// coloured per label, a legend, and a table row per label.
#[test]
fn report_shows_label_bands_and_a_table_per_label() {
    let g = load();
    let input = PerformanceInput {
        equity: &g.equity,
        positions: Some(&g.positions),
        trades: &g.trades,
    };
    let config = MetricsConfig::equities_daily();
    let metrics = compute(&input, &config).expect("valid golden input");
    // Label each period by its calendar year's parity: 24 runs over 1998-2021.
    let year = |ts: i64| 1970 + ts / 1_000_000_000 / 86_400 * 4 / 1461;
    let labels: Vec<usize> = g.equity[..g.equity.len() - 1]
        .iter()
        .map(|p| usize::try_from(year(p.ts) % 2).unwrap())
        .collect();
    let by = breakdown(&input, &labels, &config).expect("breakdown");
    let names = ["even <year>", "odd year"];
    let colors = ["#2e7d32", "#c62828"];
    let classes: Vec<LabelClass<'_>> = by
        .iter()
        .map(|(&l, m)| LabelClass {
            name: names[l],
            color: colors[l],
            metrics: m,
        })
        .collect();
    let html = render_html(&ReportInput {
        title: "bands",
        equity: &g.equity,
        trades: &g.trades,
        metrics: &metrics,
        breakdown: Some(Breakdown {
            title: "year parity",
            classes: &classes,
            labels: &labels,
        }),
        parts: &[],
    });
    let runs = 1 + labels.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(runs, 24);
    assert_eq!(html.matches("<rect class=\"band\"").count(), runs);
    assert_eq!(html.matches("data-label=\"even &lt;year&gt;\"").count(), 12);
    assert_eq!(
        html.matches("fill=\"#c62828\" fill-opacity=\"0.22\"")
            .count(),
        12
    );
    // bands sit inside the equity chart, before its curve
    let equity = html.find("<svg id=\"equity\"").unwrap();
    let drawdown = html.find("<svg id=\"drawdown\"").unwrap();
    let first_band = html.find("<rect class=\"band\"").unwrap();
    assert!(equity < first_band && first_band < drawdown);
    assert!(html.contains("<p class=\"legend\">"));
    assert!(html.contains("<h2>By year parity</h2>"));
    assert_eq!(html.matches("<tr class=\"label\">").count(), 2);
    assert!(html.contains("<tr class=\"label\"><td>even &lt;year&gt;</td>"));
    // the table's periods add up to the whole
    let periods: usize = by.values().map(|m| m.periods).sum();
    assert_eq!(periods, metrics.periods);
}

#[test]
fn parts_get_a_line_each_and_a_row_each() {
    let g = load();
    let input = PerformanceInput {
        equity: &g.equity,
        positions: Some(&g.positions),
        trades: &g.trades,
    };
    let metrics = compute(&input, &MetricsConfig::equities_daily()).expect("valid golden input");
    let half: Vec<grodt_analytics::EquityPoint> = g
        .equity
        .iter()
        .map(|p| grodt_analytics::EquityPoint {
            ts: p.ts,
            equity: p.equity / 2.0,
        })
        .collect();
    let parts = [
        grodt_analytics::Part {
            name: "trend <a>",
            color: "#2e7d32",
            equity: &half,
            metrics: &metrics,
        },
        grodt_analytics::Part {
            name: "pair",
            color: "#c62828",
            equity: &half,
            metrics: &metrics,
        },
    ];
    let html = render_html(&ReportInput {
        title: "portfolio",
        equity: &g.equity,
        trades: &g.trades,
        metrics: &metrics,
        breakdown: None,
        parts: &parts,
    });
    assert!(html.contains("<svg id=\"parts\""));
    // The whole and each part: one line each.
    assert_eq!(html.matches("<path class=\"part\"").count(), 3);
    assert_eq!(html.matches("<tr class=\"part\">").count(), 2);
    assert!(html.contains("trend &lt;a&gt;"));
}
