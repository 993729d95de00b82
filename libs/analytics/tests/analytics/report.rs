//! The HTML report: structure, escaping, and a sample written to disk.

use grodt_analytics::{MetricsConfig, PerformanceInput, ReportInput, compute, render_html};

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
