//! The SPY SMA(10/30) whole-share equity curve of backtrader, measured here
//! and by empyrical/quantstats/numpy (tests/golden/make_reference.py).

use grodt_analytics::{
    MetricsConfig, PerformanceInput, annual_volatility, breakdown, cagr, compute, cvar_historical,
    cvar_normal, drawdown_stats, log_returns, sharpe, simple_returns, sortino, trade_stats,
    var_historical, var_normal,
};

use crate::helpers::{Golden, assert_rel, load, year_of};

const REL: f64 = 1e-9;

fn reference(g: &Golden, key: &str) -> f64 {
    g.metrics[key]
        .as_f64()
        .unwrap_or_else(|| panic!("reference has no number {key}"))
}

fn input(g: &Golden) -> PerformanceInput<'_> {
    PerformanceInput {
        equity: &g.equity,
        positions: Some(&g.positions),
        trades: &g.trades,
    }
}

#[test]
fn the_fixture_is_the_published_backtest() {
    let g = load();
    assert_eq!(g.equity.len(), 5_849);
    let last = g.equity.last().expect("points").equity;
    assert_eq!(format!("{last:.2}"), "182091.18");
    // 102 trades of which one is still open at the end.
    assert_eq!(g.trades.len(), 101);
    assert_ne!(*g.positions.last().expect("positions"), 0.0);
    // The position series and the trade list tell the same story.
    let exits = g
        .positions
        .windows(2)
        .filter(|w| w[0] != 0.0 && w[1] == 0.0)
        .count();
    let entries = g
        .positions
        .windows(2)
        .filter(|w| w[0] == 0.0 && w[1] != 0.0)
        .count();
    assert_eq!((entries, exits), (102, 101));
    let first = &g.trades[0];
    assert_eq!(
        (first.qty, first.entry_price, first.exit_price),
        (896.0, 111.53, 110.72)
    );
}

#[test]
fn metrics_match_empyrical_quantstats_numpy() {
    let g = load();
    let m = compute(&input(&g), &MetricsConfig::equities_daily()).expect("valid golden input");
    assert_eq!(m.periods, 5_848);
    let cases = [
        ("total_return", m.total_return),
        ("cagr", m.cagr),
        ("annual_volatility", m.annual_volatility.expect("vol")),
        ("sharpe", m.sharpe.expect("sharpe")),
        ("sortino", m.sortino.expect("sortino")),
        ("calmar", m.calmar.expect("calmar")),
        ("max_drawdown", m.drawdown.max_drawdown),
        ("mean_return", m.mean_return),
        ("var_95_historical", m.tail.historical_95.var),
        ("var_99_historical", m.tail.historical_99.var),
        ("cvar_95_historical", m.tail.historical_95.cvar),
        ("cvar_99_historical", m.tail.historical_99.cvar),
        ("var_95_normal", m.tail.normal_95.expect("normal").var),
        ("var_99_normal", m.tail.normal_99.expect("normal").var),
        ("cvar_95_normal", m.tail.normal_95.expect("normal").cvar),
        ("cvar_99_normal", m.tail.normal_99.expect("normal").cvar),
        ("exposure", m.exposure.expect("positions given")),
        ("turnover", m.turnover),
    ];
    for (key, got) in cases {
        assert_rel(key, got, reference(&g, key), REL);
    }
}

#[test]
fn readme_rounded_figures_hold() {
    let g = load();
    let m = compute(&input(&g), &MetricsConfig::equities_daily()).expect("valid golden input");
    let n95 = m.tail.normal_95.expect("normal");
    let cases = [
        ("Sharpe", m.sharpe.expect("sharpe"), "0.284920"),
        ("Sortino", m.sortino.expect("sortino"), "0.388117"),
        ("Calmar", m.calmar.expect("calmar"), "0.085662"),
        ("max drawdown", m.drawdown.max_drawdown, "-0.305420"),
        ("CAGR", m.cagr, "0.026163"),
        ("VaR 95 historical", m.tail.historical_95.var, "-0.011647"),
        ("VaR 95 normal", n95.var, "-0.011602"),
        ("CVaR 95 historical", m.tail.historical_95.cvar, "-0.019175"),
        ("CVaR 95 normal", n95.cvar, "-0.014582"),
    ];
    for (name, got, want) in cases {
        assert_eq!(format!("{got:.6}"), want, "{name}");
    }
}

#[test]
fn standalone_functions_agree_with_the_references() {
    let g = load();
    let values: Vec<f64> = g.equity.iter().map(|p| p.equity).collect();
    let r = simple_returns(&values).expect("returns");
    let p = 252.0;
    assert_rel(
        "sharpe",
        sharpe(&r, 0.0, p).unwrap().unwrap(),
        reference(&g, "sharpe"),
        REL,
    );
    assert_rel(
        "sortino",
        sortino(&r, 0.0, p).unwrap().unwrap(),
        reference(&g, "sortino"),
        REL,
    );
    assert_rel("cagr", cagr(&r, p).unwrap(), reference(&g, "cagr"), REL);
    assert_rel(
        "annual_volatility",
        annual_volatility(&r, p).unwrap().unwrap(),
        reference(&g, "annual_volatility"),
        REL,
    );
    for (tail, lvl) in [(0.05, "95"), (0.01, "99")] {
        assert_rel(
            "var",
            var_historical(&r, tail).unwrap(),
            reference(&g, &format!("var_{lvl}_historical")),
            REL,
        );
        assert_rel(
            "cvar",
            cvar_historical(&r, tail).unwrap(),
            reference(&g, &format!("cvar_{lvl}_historical")),
            REL,
        );
        assert_rel(
            "var normal",
            var_normal(&r, tail).unwrap().unwrap(),
            reference(&g, &format!("var_{lvl}_normal")),
            REL,
        );
        assert_rel(
            "cvar normal",
            cvar_normal(&r, tail).unwrap().unwrap(),
            reference(&g, &format!("cvar_{lvl}_normal")),
            REL,
        );
    }
    let dd = drawdown_stats(&g.equity).expect("drawdown");
    assert_rel(
        "max_drawdown",
        dd.max_drawdown,
        reference(&g, "max_drawdown"),
        REL,
    );
    // Log returns sum to the log of the growth.
    let l: f64 = log_returns(&values).unwrap().iter().sum();
    assert_rel(
        "log growth",
        l,
        (1.0 + reference(&g, "total_return")).ln(),
        1e-12,
    );
}

#[test]
fn trade_stats_match_numpy() {
    let g = load();
    let s = trade_stats(&g.trades).expect("valid trades");
    let t = &g.metrics["trades"];
    let want = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("trades.{k}"));
    assert_eq!(s.count as f64, want("count"));
    assert_eq!(s.wins as f64, want("wins"));
    assert_eq!(s.losses as f64, want("losses"));
    let mae = s.mae.expect("mae");
    let mfe = s.mfe.expect("mfe");
    let cases = [
        ("win_rate", s.win_rate.expect("win rate")),
        ("gross_profit", s.gross_profit),
        ("gross_loss", s.gross_loss),
        ("net_pnl", s.net_pnl),
        ("profit_factor", s.profit_factor.expect("pf")),
        ("avg_win", s.avg_win.expect("avg win")),
        ("avg_loss", s.avg_loss.expect("avg loss")),
        ("expectancy", s.expectancy.expect("expectancy")),
        ("mae_mean", mae.mean),
        ("mae_median", mae.median),
        ("mae_min", mae.min),
        ("mfe_mean", mfe.mean),
        ("mfe_median", mfe.median),
        ("mfe_max", mfe.max),
    ];
    for (key, got) in cases {
        assert_rel(key, got, want(key), REL);
    }
}

#[test]
fn yearly_breakdown_recomposes_the_whole() {
    let g = load();
    // Label each period by the calendar year its closing mark falls in.
    let labels: Vec<i64> = g.equity[1..].iter().map(|p| year_of(p.ts)).collect();
    let input = input(&g);
    let config = MetricsConfig::equities_daily();
    let whole = compute(&input, &config).expect("whole");
    let by_year = breakdown(&input, &labels, &config).expect("breakdown");
    assert_eq!(by_year.len(), 24, "1998..=2021");
    let periods: usize = by_year.values().map(|m| m.periods).sum();
    assert_eq!(periods, whole.periods);
    let trades: usize = by_year.values().map(|m| m.trades.count).sum();
    assert_eq!(trades, whole.trades.count);
    let growth: f64 = by_year.values().map(|m| 1.0 + m.total_return).product();
    assert_rel("growth", growth, 1.0 + whole.total_return, 1e-12);
    // No year falls deeper than the whole curve.
    assert!(
        by_year
            .values()
            .all(|m| m.drawdown.max_drawdown >= whole.drawdown.max_drawdown - 1e-12)
    );
    // Each year's trade count is the trades entered that year.
    for (year, m) in &by_year {
        let entered = g
            .trades
            .iter()
            .filter(|t| year_of(t.entry_ts) == *year)
            .count();
        assert_eq!(m.trades.count, entered, "{year}");
    }
}
