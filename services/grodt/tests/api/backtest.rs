//! `grodt backtest` as a real process: the golden SMA(10/30) figures on SPY,
//! the HTML report, and bad inputs refused with the problem named.

use std::path::PathBuf;
use std::process::{Command, Output};

const GRODT: &str = env!("CARGO_BIN_EXE_grodt");

fn spy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv")
}

fn backtest(args: &[&str]) -> Output {
    Command::new(GRODT)
        .arg("backtest")
        .args(args)
        .output()
        .expect("grodt runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value printed on the table row `name`.
fn row(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            let l = l.trim_start();
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no row {name:?} in\n{stdout}"))
}

#[test]
fn sma_10_30_on_spy_prints_the_golden_figures_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("out.html");
    let spy = spy();
    let out = backtest(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--param",
        "fast=10",
        "--param",
        "slow=30",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(row(&stdout, "final value"), "182,091.18");
    assert_eq!(row(&stdout, "trades"), "102 (101 closed, 1 open)");
    assert_eq!(row(&stdout, "fills"), "203");
    assert_eq!(row(&stdout, "orders rejected"), "0");
    assert!(!stdout.contains("note:"), "{stdout}");
    assert_eq!(row(&stdout, "Sharpe"), "0.2849");
    assert_eq!(row(&stdout, "max drawdown"), "-30.54%");
    assert_eq!(row(&stdout, "total costs"), "0.00");
    // Daily equity bars: 252 periods inferred; holding time in days.
    assert_eq!(row(&stdout, "periods per year"), "252.00");
    assert!(row(&stdout, "avg holding time").ends_with(" d"), "{stdout}");
    // Not a terminal: no progress output at all.
    assert_eq!(text(&out.stderr), "");

    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"));
    assert!(
        html.matches("<svg").count() >= 3,
        "equity, drawdown and histogram charts"
    );
    assert!(html.contains("sma_cross"), "title names the strategy");
    // Self-contained: nothing fetched from elsewhere.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
}

#[test]
fn s2_and_s3_run_by_name_with_and_without_regime_gating() {
    // The golden figures of libs/strategies/tests/golden (s2s3.rs, gating.rs).
    let spy = spy();
    let spy = spy.to_str().unwrap();
    for (strategy, params, final_value, fills) in [
        ("s2", &[][..], "117,500.75", "58"),
        ("s3", &[][..], "91,489.40", "84"),
        (
            "s3",
            &["regimes=trending_up,trending_down", "on_disallowed=close"][..],
            "82,489.86",
            "62",
        ),
        ("s2", &["on_disallowed=hold"][..], "106,191.69", "4"),
    ] {
        let mut args = vec!["--data", spy, "--strategy", strategy];
        for p in params {
            args.extend(["--param", p]);
        }
        let out = backtest(&args);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        assert_eq!(
            row(&stdout, "final value"),
            final_value,
            "{strategy} {params:?}"
        );
        assert_eq!(row(&stdout, "fills"), fills, "{strategy} {params:?}");
    }
    let out = backtest(&[
        "--data",
        spy,
        "--strategy",
        "s2",
        "--param",
        "regimes=sideways",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "parameter regimes: \"sideways\" is not a comma-separated non-empty list of trending_up, trending_down, ranging, transition, high_volatility"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn costs_are_itemised_and_change_the_result() {
    let spy = spy();
    let out = backtest(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--fees",
        "per_share=0.005,min=1",
        "--slippage",
        "bps=5",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_ne!(row(&stdout, "commission"), "0.00");
    assert_ne!(row(&stdout, "slippage"), "0.00");
    assert_ne!(row(&stdout, "final value"), "182,091.18");
}

#[test]
fn bad_inputs_exit_non_zero_naming_the_problem() {
    let spy = spy();
    let spy = spy.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--data", spy, "--strategy", "rsi"],
            2,
            "unknown strategy \"rsi\"; valid strategies: sma_cross, ema_cross, s1, s2, s3, pair",
        ),
        (
            &[
                "--data",
                spy,
                "--strategy",
                "sma_cross",
                "--param",
                "fats=3",
            ],
            2,
            "unknown parameter \"fats\" for strategy sma_cross; valid parameters: fast, slow",
        ),
        (
            &[
                "--data",
                spy,
                "--strategy",
                "sma_cross",
                "--param",
                "fast=ten",
            ],
            2,
            "parameter fast: \"ten\" is not a non-negative integer",
        ),
        (
            &[
                "--data",
                spy,
                "--strategy",
                "sma_cross",
                "--param",
                "fast=0",
            ],
            2,
            "parameter fast: 0 is out of bounds: must be >= 1",
        ),
        (
            &["--data", spy, "--strategy", "sma_cross", "--fees", "flat=1"],
            2,
            "--fees: \"flat=1\": expected pct=F or bps=N [,min=Y], per_share=X[,min=Y][,max_fraction=F]",
        ),
        (
            &[
                "--data",
                spy,
                "--strategy",
                "sma_cross",
                "--param",
                "fast=40",
            ],
            1,
            "fast",
        ),
        (
            &["--data", "/nonexistent/x.csv", "--strategy", "sma_cross"],
            1,
            "/nonexistent/x.csv",
        ),
    ];
    for (args, code, message) in cases {
        let out = backtest(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn a_malformed_csv_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "timestamp,open,high,low,close,volume\n\
         2020-01-02T00:00:00Z,10,11,9,10.5,100\n\
         2020-01-03T00:00:00Z,10,eleven,9,10.5,100\n",
    )
    .unwrap();
    let out = backtest(&["--data", path.to_str().unwrap(), "--strategy", "sma_cross"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.csv") && stderr.contains('3'),
        "{stderr}"
    );
}

fn percent(text: &str) -> f64 {
    text.trim_end_matches('%')
        .parse::<f64>()
        .expect("a percentage")
        / 100.0
}

#[test]
fn one_minute_crypto_annualises_by_its_bar_spacing() {
    let btc = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv");
    let out = backtest(&[
        "--data",
        btc.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--param",
        "fast=1000",
        "--param",
        "slow=3000",
        "--fractional",
        "--asset-class",
        "crypto",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // 365 days of 1,440 one-minute bars, not 252.
    assert_eq!(row(&stdout, "periods per year"), "525600.00");
    let final_value: f64 = row(&stdout, "final value")
        .replace(',', "")
        .parse()
        .unwrap();
    let bars: f64 = row(&stdout, "bars").parse().unwrap();
    let growth = final_value / 100_000.0;
    let expected = growth.powf(525_600.0 / (bars - 1.0)) - 1.0;
    let cagr = percent(&row(&stdout, "CAGR"));
    assert!(
        (cagr - expected).abs() < 0.000_1,
        "CAGR {cagr} vs {expected} for {growth} over {bars} minutes"
    );
    // Holding times print in days or hours here, never in bars.
    let held = row(&stdout, "avg holding time");
    assert!(held.ends_with(" d") || held.ends_with(" h"), "{held}");
}

#[test]
fn a_run_whose_orders_are_refused_says_so() {
    // All-in entries leave no room for a 1% fee: the margin check refuses each.
    let spy = spy();
    let out = backtest(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--fees",
        "pct=0.01",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(row(&stdout, "fills"), "0");
    let rejected: usize = row(&stdout, "orders rejected").parse().unwrap();
    assert!(rejected > 50, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "note: {rejected} order(s) rejected; the first: insufficient margin"
        )),
        "{stdout}"
    );
}

/// By default the run is broken down by regime: a per-regime table whose
/// bars add up to the run's, and equity bands plus a table in the report;
/// `--no-regimes` prints and draws neither.
#[test]
fn per_regime_table_and_report_bands() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("regimes.html");
    let spy = spy();
    let args = [
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--param",
        "fast=10",
        "--param",
        "slow=30",
    ];
    let mut with_report = args.to_vec();
    with_report.extend(["--report", report.to_str().unwrap()]);
    let out = backtest(&with_report);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("by regime (regime in force"), "{stdout}");
    let names = [
        "trending_up",
        "trending_down",
        "ranging",
        "transition",
        "high_volatility",
        "warm_up",
    ];
    let mut bars = 0;
    let mut trades = 0;
    for name in names {
        let cells: Vec<String> = row(&stdout, name)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        bars += cells[0].parse::<u64>().unwrap();
        trades += cells[5].parse::<u64>().unwrap();
    }
    // 5,849 bars: 5,848 periods; 101 closed trades
    assert_eq!(bars, 5_848);
    assert_eq!(trades, 101);
    assert_eq!(
        row(&stdout, "warm_up").split_whitespace().next(),
        Some("262")
    );
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.contains("<h2>By regime</h2>"));
    for name in names {
        assert!(
            html.contains(&format!("<rect class=\"band\" data-label=\"{name}\"")),
            "no {name} band"
        );
        assert!(html.contains(&format!("<tr class=\"label\"><td>{name}</td>")));
    }
    // 573 regime changes after the warm-up band: at least that many bands
    assert!(html.matches("<rect class=\"band\"").count() >= 574);

    let mut plain = args.to_vec();
    plain.push("--no-regimes");
    let out = backtest(&plain);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    assert!(!stdout.contains("by regime"));
    assert_eq!(row(&stdout, "final value"), "182,091.18");
}

/// `grodt regimes accuracy` prints one matrix per file; a bad horizon is refused.
#[test]
fn regimes_accuracy_command() {
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples");
    let out = Command::new(GRODT)
        .args(["regimes", "accuracy", "--data"])
        .arg(samples.join("spy_1d_1998-2021.csv"))
        .arg("--data")
        .arg(samples.join("aapl_1d_1998-2021_unadjusted.csv"))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.matches("confusion matrix").count(), 2, "{stdout}");
    assert!(stdout.contains("aapl_1d_1998-2021_unadjusted.csv: 5849 bars"));
    let out = Command::new(GRODT)
        .args(["regimes", "accuracy", "--horizon", "1", "--data"])
        .arg(samples.join("spy_1d_1998-2021.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("horizon"),
        "{}",
        text(&out.stderr)
    );
}

fn example_portfolio() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/portfolio.toml")
}

/// The example of docs/portfolio.md, run as the docs run it: the figures the
/// docs quote, every strategy in the table and in the report.
#[test]
fn the_example_portfolio_prints_the_documented_figures_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("portfolio.html");
    let file = example_portfolio();
    let out = backtest(&[
        "--portfolio",
        file.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(row(&stdout, "final value"), "269,098.46");
    assert_eq!(row(&stdout, "orders (strategies)"), "459");
    assert_eq!(row(&stdout, "orders (venue)"), "458");
    assert_eq!(row(&stdout, "commission saved"), "25.87");
    assert_eq!(row(&stdout, "diversification ratio"), "1.966");
    for id in ["trend", "short", "pair"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{id} "))),
            "{id} missing from\n{stdout}"
        );
    }
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg id=\"parts\""));
    assert_eq!(html.matches("<tr class=\"part\">").count(), 3);
    assert!(html.contains("pair (pair on AAPL/SPY)"));
}

#[test]
fn a_bad_portfolio_file_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let text_of = |body: &str| {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, body).unwrap();
        let out = backtest(&["--portfolio", path.to_str().unwrap()]);
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let spy = spy();
    let base = format!(
        "cash = \"100000\"\n[data]\nSPY = {:?}\n[[strategy]]\nid = \"t\"\nname = \"sma_cross\"\nsymbols = [\"SPY\"]\n",
        spy.to_str().unwrap()
    );
    let e = text_of(&base.replace("symbols = [\"SPY\"]", "symbols = [\"QQQ\"]"));
    assert!(e.contains("t: QQQ has no file in [data]"), "{e}");
    let e = text_of(&format!("{base}params = {{ fast = 40, slow = 20 }}\n"));
    assert!(
        e.contains("portfolio strategy t") && e.contains("fast"),
        "{e}"
    );
    let e = text_of(&base.replace("name = \"sma_cross\"", "name = \"pair\""));
    assert!(e.contains("pair trades 2 instruments; 1 given"), "{e}");
    let e = text_of(&format!("{base}[costs]\nfees = \"per_share=-1\"\n"));
    assert!(e.contains("[costs] fees"), "{e}");
    // --portfolio carries its own data and strategies.
    let out = backtest(&["--portfolio", "x.toml", "--strategy", "sma_cross"]);
    assert_eq!(out.status.code(), Some(2));
}

fn sweep(args: &[&str]) -> Output {
    Command::new(GRODT)
        .arg("sweep")
        .args(args)
        .output()
        .expect("grodt runs")
}

/// `grodt sweep` on a small grid: the golden set's figures, and the best
/// set's final value is the one `grodt backtest` prints for it.
#[test]
fn sweep_prints_the_best_sets_with_the_engines_figures() {
    let spy = spy();
    let out = sweep(&[
        "--data",
        spy.to_str().unwrap(),
        "--param",
        "fast=5..15",
        "--param",
        "slow=10..40:10",
        "--rank",
        "final",
        "--top",
        "3",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // 11 × 4 = 44 combinations; the 6 with fast >= slow are refused by the registry.
    assert!(stdout.contains(": 38 sets swept (6 refused"), "{stdout}");
    let best = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("fast="))
        .expect("a row");
    let cols: Vec<&str> = best.split_whitespace().collect();
    let (fast, slow, value) = (cols[0], cols[1], cols[2]);
    let bt = backtest(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "sma_cross",
        "--param",
        fast,
        "--param",
        slow,
        "--no-regimes",
    ]);
    let bt_out = text(&bt.stdout);
    assert!(bt.status.success(), "{bt_out}");
    assert_eq!(row(&bt_out, "final value"), value, "{best}");
    // And the reference set.
    let golden = sweep(&[
        "--data",
        spy.to_str().unwrap(),
        "--param",
        "fast=10",
        "--param",
        "slow=30",
    ]);
    assert!(text(&golden.stdout).contains("182,091.18"));
    // The Donchian kernel: its best set's final value is the engine's too.
    let s3 = sweep(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "s3",
        "--param",
        "entry_window=10..50:20",
        "--param",
        "exit_window=5..15:5",
        "--rank",
        "final",
        "--top",
        "1",
    ]);
    let s3_out = text(&s3.stdout);
    assert!(s3.status.success(), "{s3_out}\n{}", text(&s3.stderr));
    assert!(s3_out.contains(": 9 sets swept"), "{s3_out}");
    let best = s3_out
        .lines()
        .find(|l| l.trim_start().starts_with("entry_window="))
        .expect("a row");
    let cols: Vec<&str> = best.split_whitespace().collect();
    let bt = backtest(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "s3",
        "--param",
        cols[0],
        "--param",
        cols[1],
        "--no-regimes",
    ]);
    let bt_out = text(&bt.stdout);
    assert!(bt.status.success(), "{bt_out}");
    assert_eq!(row(&bt_out, "final value"), cols[2], "{best}");
    // A strategy without a kernel is named.
    let e = sweep(&[
        "--data",
        spy.to_str().unwrap(),
        "--strategy",
        "s1",
        "--param",
        "vwap_period=10..20",
    ]);
    assert_eq!(e.status.code(), Some(2));
    assert!(
        text(&e.stderr).contains("no sweep kernel"),
        "{}",
        text(&e.stderr)
    );
}
