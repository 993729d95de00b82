//! A self-contained HTML report of one optimization: the convergence curve
//! (best objective so far against trials finished), a heatmap per pair of
//! searched parameters, the best trials, the recommended stable set, the
//! walk-forward folds with the stitched out-of-sample equity, and the Monte
//! Carlo percentiles.
//!
//! Plain display structs in, one HTML string out (inline SVG, no script, no
//! external resource), like [`crate::report::render_html`]; the caller (the
//! `grodt optimize` CLI) converts its wire types into them.

use std::fmt::Write as _;

use crate::metrics::EquityPoint;
use crate::report::{
    CSS, HEIGHT, PAD_B, PAD_L, PAD_R, PAD_T, WIDTH, axes, escape_html, finite_range, line_chart,
    svg_open,
};

/// One finished trial, in the order trials finished.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPoint {
    /// Its objective, `None` when it failed or was not scored.
    pub objective: Option<f64>,
}

/// One row of the best-trials table.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    /// The trial's id.
    pub id: String,
    /// `name=value` pairs.
    pub params: String,
    /// Its objective.
    pub objective: f64,
    /// Closed trades.
    pub trades: u32,
    /// Total return.
    pub total_return: f64,
    /// Max drawdown (<= 0).
    pub max_drawdown: f64,
}

/// The objective over two parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapPart {
    /// The x parameter.
    pub x: String,
    /// The y parameter.
    pub y: String,
    /// Its x values.
    pub x_values: Vec<String>,
    /// Its y values.
    pub y_values: Vec<String>,
    /// Row-major (`values[j * x_values.len() + i]`), NaN where none.
    pub values: Vec<f64>,
    /// The cell of the best trial, outlined.
    pub best: Option<(usize, usize)>,
}

/// One walk-forward fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldRow {
    /// 0-based.
    pub fold: u32,
    /// `start..end` of the in-sample window.
    pub in_sample: String,
    /// `start..end` of the out-of-sample window.
    pub out_of_sample: String,
    /// The chosen parameters.
    pub params: String,
    /// In-sample objective.
    pub in_sample_objective: f64,
    /// Out-of-sample objective.
    pub out_of_sample_objective: f64,
    /// Out-of-sample total return.
    pub out_of_sample_return: f64,
    /// Why the fold has no out-of-sample run, if it has none.
    pub error: String,
}

/// The walk-forward part.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkForwardPart {
    /// The folds.
    pub folds: Vec<FoldRow>,
    /// The stitched out-of-sample equity.
    pub stitched: Vec<EquityPoint>,
    /// `(label, value)` lines: efficiency, stitched return, Sharpe, drawdown.
    pub figures: Vec<(String, String)>,
    /// `(parameter, modal value, share of folds, coefficient of variation)`.
    pub stability: Vec<(String, String, f64, f64)>,
}

/// One Monte Carlo figure across simulations.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadRow {
    /// What it is.
    pub name: String,
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// The observed value.
    pub observed: f64,
    /// Share of simulations at or below the observed value.
    pub observed_percentile: f64,
}

/// The Monte Carlo part.
#[derive(Debug, Clone, PartialEq)]
pub struct MonteCarloPart {
    /// The method and its settings, as text.
    pub method: String,
    /// The figures.
    pub rows: Vec<SpreadRow>,
    /// Share of simulations ending below the initial equity.
    pub probability_of_loss: f64,
    /// Set when the analysis could not run.
    pub error: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizationReport {
    /// The title.
    pub title: String,
    /// `(label, value)` lines at the top.
    pub summary: Vec<(String, String)>,
    /// Finished trials in finishing order, for the convergence curve.
    pub trials: Vec<TrialPoint>,
    /// The best trials.
    pub top: Vec<TrialRow>,
    /// The heatmaps.
    pub heatmaps: Vec<HeatmapPart>,
    /// The recommended stable set, as a sentence.
    pub recommendation: Option<String>,
    /// Walk-forward, if the run was one.
    pub walk_forward: Option<WalkForwardPart>,
    /// Monte Carlo, if it ran.
    pub monte_carlo: Option<MonteCarloPart>,
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "–".into()
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", x * 100.0)
    } else {
        "–".into()
    }
}

/// Best objective so far after each finished trial (a step line); failed
/// trials keep the previous best.
fn convergence(html: &mut String, trials: &[TrialPoint]) {
    svg_open(
        html,
        "convergence",
        "best objective so far by trials finished",
    );
    let mut best = f64::NEG_INFINITY;
    let steps: Vec<f64> = trials
        .iter()
        .map(|t| {
            if let Some(v) = t.objective.filter(|v| v.is_finite()) {
                best = best.max(v);
            }
            best
        })
        .collect();
    let Some((lo, hi)) = finite_range(steps.iter().copied()) else {
        html.push_str("<text x=\"10\" y=\"20\" class=\"axis\">no scored trial</text>\n</svg>\n");
        return;
    };
    #[allow(clippy::cast_precision_loss, reason = "trial counts")]
    let n = steps.len().max(2) as f64;
    #[allow(clippy::cast_precision_loss, reason = "trial counts")]
    let x = |i: usize| PAD_L + i as f64 / (n - 1.0) * (WIDTH - PAD_L - PAD_R);
    let y = |v: f64| PAD_T + (hi - v) / (hi - lo) * (HEIGHT - PAD_T - PAD_B);
    let mut path = String::new();
    let mut started = false;
    for (i, v) in steps.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        if started {
            let _ = write!(path, "H{:.1}V{:.1}", x(i), y(*v));
        } else {
            let _ = write!(path, "M{:.1},{:.1}", x(i), y(*v));
            started = true;
        }
    }
    let _ = writeln!(
        html,
        "<path d=\"{path}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\"/>"
    );
    axes(
        html,
        &num(hi),
        &num(lo),
        "trial 1",
        &format!("trial {}", steps.len()),
    );
    html.push_str("</svg>\n");
}

/// A colour from dark blue (low) to yellow (high).
fn colour(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| a + (b - a) * t;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "channels in 0..=255"
    )]
    let c = |v: f64| v.round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        c(lerp(40.0, 250.0)),
        c(lerp(50.0, 220.0)),
        c(lerp(130.0, 60.0))
    )
}

fn heatmap(html: &mut String, k: usize, h: &HeatmapPart) {
    let (nx, ny) = (h.x_values.len(), h.y_values.len());
    if nx == 0 || ny == 0 {
        return;
    }
    let _ = writeln!(
        html,
        "<h3>{} (x) × {} (y)</h3>",
        escape_html(&h.x),
        escape_html(&h.y)
    );
    let (cell, left, top) = (14.0, 60.0, 10.0);
    #[allow(clippy::cast_precision_loss, reason = "at most 41 cells an axis")]
    let (w, hgt) = (
        left + cell * nx as f64 + 10.0,
        top + cell * ny as f64 + 40.0,
    );
    let _ = writeln!(
        html,
        "<svg id=\"heatmap-{k}\" viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" xmlns=\"http://www.w3.org/2000/svg\" \
         role=\"img\" aria-label=\"objective over {} and {}\">",
        escape_html(&h.x),
        escape_html(&h.y)
    );
    let range = finite_range(h.values.iter().copied());
    for j in 0..ny {
        for i in 0..nx {
            let v = h.values.get(j * nx + i).copied().unwrap_or(f64::NAN);
            let fill = match range {
                Some((lo, hi)) if v.is_finite() => colour((v - lo) / (hi - lo)),
                _ => "#d5d9de".to_owned(),
            };
            #[allow(clippy::cast_precision_loss, reason = "cell indices")]
            let (cx, cy) = (left + cell * i as f64, top + cell * (ny - 1 - j) as f64);
            let _ = writeln!(
                html,
                "<rect class=\"cell\" x=\"{cx}\" y=\"{cy}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\">\
                 <title>{}={} {}={}: {}</title></rect>",
                escape_html(&h.x),
                escape_html(&h.x_values[i]),
                escape_html(&h.y),
                escape_html(&h.y_values[j]),
                num(v)
            );
        }
    }
    if let Some((i, j)) = h.best.filter(|(i, j)| *i < nx && *j < ny) {
        #[allow(clippy::cast_precision_loss, reason = "cell indices")]
        let (cx, cy) = (left + cell * i as f64, top + cell * (ny - 1 - j) as f64);
        let _ = writeln!(
            html,
            "<rect class=\"best\" x=\"{cx}\" y=\"{cy}\" width=\"{cell}\" height=\"{cell}\" fill=\"none\" stroke=\"#c62828\" stroke-width=\"2\"/>"
        );
    }
    #[allow(clippy::cast_precision_loss, reason = "cell counts")]
    let base = top + cell * ny as f64;
    let _ = writeln!(
        html,
        "<text class=\"axis\" x=\"{left}\" y=\"{}\">{}={}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}={}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        base + 14.0,
        escape_html(&h.x),
        escape_html(&h.x_values[0]),
        w - 10.0,
        base + 14.0,
        escape_html(&h.x_values[nx - 1]),
        left - 4.0,
        base,
        escape_html(&h.y),
        escape_html(&h.y_values[0]),
        left - 4.0,
        top + 10.0,
        escape_html(&h.y_values[ny - 1]),
    );
    html.push_str("</svg>\n");
}

fn kv_table(html: &mut String, rows: &[(String, String)]) {
    html.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape_html(k),
            escape_html(v)
        );
    }
    html.push_str("</table>\n");
}

/// Renders the report.
pub fn render_optimization_html(r: &OptimizationReport) -> String {
    let title = escape_html(&r.title);
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    kv_table(&mut html, &r.summary);
    if !r.trials.is_empty() {
        html.push_str("<h2>Convergence</h2>\n");
        convergence(&mut html, &r.trials);
    }
    if let Some(rec) = &r.recommendation {
        let _ = writeln!(
            html,
            "<h2>Recommended parameters</h2>\n<p id=\"recommendation\">{}</p>",
            escape_html(rec)
        );
    }
    if !r.heatmaps.is_empty() {
        html.push_str("<h2>Heatmaps</h2>\n");
        for (k, h) in r.heatmaps.iter().enumerate() {
            heatmap(&mut html, k, h);
        }
    }
    if !r.top.is_empty() {
        html.push_str(
            "<h2>Best trials</h2>\n<table id=\"top\">\n<tr><th>trial</th><th>parameters</th><th>objective</th>\
             <th>trades</th><th>return</th><th>max drawdown</th></tr>\n",
        );
        for t in &r.top {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&t.id),
                escape_html(&t.params),
                num(t.objective),
                t.trades,
                pct(t.total_return),
                pct(t.max_drawdown)
            );
        }
        html.push_str("</table>\n");
    }
    if let Some(wf) = &r.walk_forward {
        html.push_str(
            "<h2>Walk-forward</h2>\n<table id=\"folds\">\n<tr><th>fold</th><th>in sample</th><th>out of sample</th>\
             <th>parameters</th><th>in-sample objective</th><th>out-of-sample objective</th><th>out-of-sample return</th></tr>\n",
        );
        for f in &wf.folds {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.fold,
                escape_html(&f.in_sample),
                escape_html(&f.out_of_sample),
                escape_html(if f.error.is_empty() {
                    &f.params
                } else {
                    &f.error
                }),
                num(f.in_sample_objective),
                num(f.out_of_sample_objective),
                pct(f.out_of_sample_return)
            );
        }
        html.push_str("</table>\n");
        kv_table(&mut html, &wf.figures);
        if wf.stitched.len() >= 2 {
            html.push_str("<h3>Stitched out-of-sample equity</h3>\n");
            let ts: Vec<i64> = wf.stitched.iter().map(|p| p.ts).collect();
            let eq: Vec<f64> = wf.stitched.iter().map(|p| p.equity).collect();
            line_chart(
                &mut html,
                "stitched-equity",
                &ts,
                &eq,
                "#1f6feb",
                false,
                None,
                |v| format!("{v:.0}"),
            );
        }
        if !wf.stability.is_empty() {
            html.push_str(
                "<h3>Stability of the chosen parameters</h3>\n<table>\n<tr><th>parameter</th><th>modal value</th>\
                 <th>share of folds</th><th>coefficient of variation</th></tr>\n",
            );
            for (p, v, share, cv) in &wf.stability {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_html(p),
                    escape_html(v),
                    pct(*share),
                    num(*cv)
                );
            }
            html.push_str("</table>\n");
        }
    }
    if let Some(mc) = &r.monte_carlo {
        let _ = writeln!(
            html,
            "<h2>Monte Carlo</h2>\n<p>{}</p>",
            escape_html(&mc.method)
        );
        if mc.error.is_empty() {
            html.push_str(
                "<table id=\"monte-carlo\">\n<tr><th>figure</th><th>5th pct</th><th>median</th><th>95th pct</th>\
                 <th>observed</th><th>observed percentile</th></tr>\n",
            );
            for row in &mc.rows {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_html(&row.name),
                    num(row.p5),
                    num(row.p50),
                    num(row.p95),
                    num(row.observed),
                    pct(row.observed_percentile)
                );
            }
            let _ = writeln!(
                html,
                "</table>\n<p>probability of loss: {}</p>",
                pct(mc.probability_of_loss)
            );
        } else {
            let _ = writeln!(html, "<p>not run: {}</p>", escape_html(&mc.error));
        }
    }
    html.push_str("</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_holds_every_part_it_is_given() {
        let r = OptimizationReport {
            title: "study <1>".into(),
            summary: vec![("state".into(), "SUCCEEDED".into())],
            trials: [Some(0.5), None, Some(1.5), Some(1.0)]
                .into_iter()
                .map(|objective| TrialPoint { objective })
                .collect(),
            top: vec![TrialRow {
                id: "2".into(),
                params: "fast=10 slow=40".into(),
                objective: 1.5,
                trades: 12,
                total_return: 0.1,
                max_drawdown: -0.05,
            }],
            heatmaps: vec![HeatmapPart {
                x: "fast".into(),
                y: "slow".into(),
                x_values: vec!["5".into(), "10".into(), "15".into()],
                y_values: vec!["40".into(), "80".into()],
                values: vec![0.5, 1.5, f64::NAN, 1.0, 0.2, 0.3],
                best: Some((1, 0)),
            }],
            recommendation: Some("fast=10 slow=40".into()),
            walk_forward: Some(WalkForwardPart {
                folds: vec![FoldRow {
                    fold: 0,
                    in_sample: "a..b".into(),
                    out_of_sample: "b..c".into(),
                    params: "fast=10".into(),
                    in_sample_objective: 1.0,
                    out_of_sample_objective: 0.5,
                    out_of_sample_return: 0.02,
                    error: String::new(),
                }],
                stitched: vec![
                    EquityPoint {
                        ts: 0,
                        equity: 100.0,
                    },
                    EquityPoint {
                        ts: 86_400_000_000_000,
                        equity: 110.0,
                    },
                ],
                figures: vec![("efficiency".into(), "0.5".into())],
                stability: vec![("fast".into(), "10".into(), 1.0, 0.0)],
            }),
            monte_carlo: Some(MonteCarloPart {
                method: "PRICE_NOISE".into(),
                rows: vec![SpreadRow {
                    name: "Sharpe".into(),
                    p5: 1.0,
                    p50: 1.2,
                    p95: 1.4,
                    observed: 1.5,
                    observed_percentile: 1.0,
                }],
                probability_of_loss: 0.0,
                error: String::new(),
            }),
        };
        let html = render_optimization_html(&r);
        assert!(html.contains("<title>study &lt;1&gt;</title>"), "escaped");
        assert!(html.contains("id=\"convergence\""));
        // One cell per (x, y); the NaN cell grey; the best outlined.
        assert_eq!(html.matches("class=\"cell\"").count(), 6);
        assert_eq!(html.matches("fill=\"#d5d9de\"").count(), 1);
        assert_eq!(html.matches("class=\"best\"").count(), 1);
        for id in [
            "top",
            "folds",
            "stitched-equity",
            "monte-carlo",
            "recommendation",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.ends_with("</html>\n"));
        assert!(!html.contains("<script"), "no script");
    }

    #[test]
    fn the_convergence_curve_only_rises() {
        let mut html = String::new();
        let trials: Vec<TrialPoint> = [Some(1.0), Some(0.5), Some(2.0)]
            .into_iter()
            .map(|objective| TrialPoint { objective })
            .collect();
        convergence(&mut html, &trials);
        // M at 1.0, H to trial 2 at the same level, then up to 2.0.
        let path = html
            .split("d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ys: Vec<f64> = path
            .split(['V', ','])
            .skip(1)
            .filter_map(|s| s.split('H').next()?.parse().ok())
            .collect();
        assert!(ys.windows(2).all(|w| w[1] <= w[0]), "{path}");
        let mut none = String::new();
        convergence(&mut none, &[TrialPoint { objective: None }]);
        assert!(none.contains("no scored trial"));
    }
}
