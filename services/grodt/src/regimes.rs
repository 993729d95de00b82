//! `grodt regimes accuracy`: the classifier (grodt-regimes, default config)
//! graded against the ex-post labels of `grodt_regimes::expost` on CSV files,
//! one confusion matrix per file. The method is in docs/regimes.md
//! ("Accuracy").
//!
//! Files are normalised CSV (`timestamp,open,high,low,close,volume`), or the
//! CryptoDataDownload layout of `coinbase_btcusd_1h_raw.csv` (a banner line,
//! then `date,symbol,open,high,low,close,volume_btc,volume`, newest first),
//! recognised by its header; its rows are sorted by time and a repeated
//! timestamp keeps its first row.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use grodt_core::Bar;
use grodt_data::import::{CsvOptions, read_csv_unhashed};
use grodt_regimes::expost::{Confusion, ExPostRule, Grade, grade};
use grodt_regimes::{Regime, RegimeConfig};

/// Options of `grodt regimes accuracy`.
#[derive(Debug, Clone, clap::Args)]
pub struct AccuracyOptions {
    /// A CSV file; repeat for several (each gets its own matrix).
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// Forward window of the ex-post labels, in bars.
    #[arg(long, default_value_t = 20)]
    pub horizon: usize,
}

/// The bars of a file, oldest first, with the price scale.
///
/// # Errors
/// The file and why it cannot be read.
pub fn load_bars(path: &Path) -> Result<(Vec<Bar>, u8), String> {
    let options = CsvOptions::detect_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw = read_csv_unhashed(path, &options).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(f) = raw.findings.first() {
        return Err(format!("{}: {}", path.display(), f.message));
    }
    let mut bars = Vec::with_capacity(raw.rows.len());
    for row in &raw.rows {
        let (Some(ts), [Some(open), Some(high), Some(low), Some(close), Some(volume)]) =
            (row.ts, row.values)
        else {
            return Err(format!(
                "{}: line {}: a value is missing",
                path.display(),
                row.line
            ));
        };
        bars.push(Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
        });
    }
    bars.sort_by_key(|b| b.ts);
    bars.dedup_by_key(|b| b.ts);
    Ok((bars, raw.price_scale))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

/// The matrix as text: rows are ex-post labels, columns the classifier's
/// regimes, with row totals and recall, and precision underneath.
pub fn matrix_text(m: &Confusion) -> String {
    let mut s = String::new();
    let _ = write!(s, "    {:<17}", "ex post \\ called");
    for r in Regime::ALL {
        let _ = write!(s, " {:>15}", r.name());
    }
    let _ = writeln!(s, " {:>8} {:>7}", "total", "recall");
    for (i, t) in Regime::ALL.iter().enumerate() {
        let _ = write!(s, "    {:<17}", t.name());
        for c in m.counts[i] {
            let _ = write!(s, " {c:>15}");
        }
        let _ = writeln!(s, " {:>8} {:>7}", m.truth_count(*t), pct(m.recall(*t)));
    }
    let _ = write!(s, "    {:<17}", "total");
    for r in Regime::ALL {
        let _ = write!(s, " {:>15}", m.predicted_count(r));
    }
    let _ = writeln!(s, " {:>8}", m.total());
    let _ = write!(s, "    {:<17}", "precision");
    for r in Regime::ALL {
        let _ = write!(s, " {:>15}", pct(m.precision(r)));
    }
    s.push('\n');
    s
}

/// The report of one file.
pub fn grade_text(name: &str, g: &Grade, rule: &ExPostRule) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{name}: {} bars, {} decisions, {} graded (ex-post horizon {} bars)",
        g.bars, g.decisions, g.graded, rule.horizon
    );
    for (what, m) in [
        ("regime in force", &g.in_force),
        ("rules' candidate", &g.candidate),
        ("trailing window*", &g.trailing),
    ] {
        let _ = writeln!(
            s,
            "  {what:<17} accuracy {:>6}  kappa {:>6}  chance {:>6}  majority baseline {:>6}",
            pct(m.accuracy()),
            m.kappa()
                .map_or_else(|| "n/a".into(), |k| format!("{k:.3}")),
            pct(m.chance_agreement()),
            pct(m.majority_baseline()),
        );
    }
    let _ = writeln!(
        s,
        "  (* diagnostic: the same rule over the {} bars ending at the decision, not a forecast)",
        rule.horizon
    );
    let _ = writeln!(
        s,
        "  confusion matrix, regime in force (rows: ex-post label, columns: classifier)"
    );
    s.push_str(&matrix_text(&g.in_force));
    s
}

/// Grades every file and writes the reports to `out`.
///
/// # Errors
/// A file that cannot be read, or an invalid horizon.
pub fn execute(options: &AccuracyOptions, out: &mut dyn std::io::Write) -> Result<(), String> {
    let rule = ExPostRule {
        horizon: options.horizon,
        ..ExPostRule::default()
    };
    rule.validate()?;
    let _ = writeln!(
        out,
        "classifier: grodt-regimes defaults; ex-post rule: horizon {} bars, trend efficiency >= {}, \
         ranging efficiency < {}, high volatility: forward RV >= q{} and >= {} x median\n",
        rule.horizon,
        rule.trend_efficiency,
        rule.range_efficiency,
        rule.high_vol_quantile,
        rule.high_vol_vs_median
    );
    for path in &options.data {
        let (bars, scale) = load_bars(path)?;
        let g = grade(RegimeConfig::default(), scale, &bars, &rule)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        writeln!(out, "{}", grade_text(&name, &g, &rule)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples")
            .join(file)
    }

    /// The raw Coinbase layout loads sorted with one bar per timestamp; a
    /// normalised file loads as is.
    #[test]
    fn both_layouts_load_oldest_first() {
        let (bars, scale) = load_bars(&sample("coinbase_btcusd_1h_raw.csv")).unwrap();
        assert!(bars.windows(2).all(|w| w[0].ts < w[1].ts));
        assert!(
            bars.len() > 20_000 && bars.len() <= 20_111,
            "{}",
            bars.len()
        );
        assert_eq!(scale, 2);
        let (spy, scale) = load_bars(&sample("spy_1d_1998-2021.csv")).unwrap();
        assert_eq!((spy.len(), scale), (5_849, 4));
    }

    /// The command's report on SPY: every row total adds up to the graded
    /// decisions and the accuracy is the diagonal's share.
    #[test]
    fn accuracy_report_on_spy_is_consistent() {
        let mut out = Vec::new();
        execute(
            &AccuracyOptions {
                data: vec![sample("spy_1d_1998-2021.csv")],
                horizon: 20,
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        // 5,849 bars, first decision at bar 262, the last 20 have no forward window
        assert!(
            text.contains("spy_1d_1998-2021.csv: 5849 bars, 5587 decisions, 5567 graded"),
            "{text}"
        );
        let (bars, scale) = load_bars(&sample("spy_1d_1998-2021.csv")).unwrap();
        let g = grade(
            RegimeConfig::default(),
            scale,
            &bars,
            &ExPostRule::default(),
        )
        .unwrap();
        assert_eq!(g.in_force.total(), 5_567);
        let acc = g.in_force.accuracy().unwrap();
        assert!(
            text.contains(&format!("accuracy {:>6}", pct(Some(acc)))),
            "{text}"
        );
    }
}
