//! Properties that hold for any valid curve.

use grodt_analytics::{
    EquityPoint, Metrics, MetricsConfig, PerformanceInput, Side, Trade, breakdown, compute,
    cvar_historical, cvar_normal, percentile, tail_risk, var_historical, var_normal,
};
use proptest::prelude::*;

const DAY: i64 = 86_400 * 1_000_000_000;

fn curve(start: f64, returns: &[f64]) -> Vec<EquityPoint> {
    let mut value = start;
    let mut out = vec![EquityPoint {
        ts: 0,
        equity: value,
    }];
    for (i, r) in returns.iter().enumerate() {
        value *= 1.0 + r;
        out.push(EquityPoint {
            ts: (i as i64 + 1) * DAY,
            equity: value,
        });
    }
    out
}

fn returns_strategy() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-0.5f64..0.5, 1..300)
}

fn trades_strategy(max_day: i64) -> impl Strategy<Value = Vec<Trade>> {
    prop::collection::vec(
        (
            0..=max_day,
            0..5i64,
            -100.0f64..100.0,
            0.0f64..2.0,
            any::<bool>(),
        ),
        0..20,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(day, held, pnl, fees, long)| Trade {
                entry_ts: day * DAY,
                exit_ts: (day + held) * DAY,
                side: if long { Side::Long } else { Side::Short },
                qty: 10.0,
                entry_price: 100.0,
                exit_price: 100.0 + pnl / 10.0,
                pnl,
                fees,
                mae: pnl.min(0.0) - fees,
                mfe: pnl.max(0.0) + fees,
            })
            .collect()
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn metrics(eq: &[EquityPoint]) -> Metrics {
    let input = PerformanceInput {
        equity: eq,
        positions: None,
        trades: &[],
    };
    compute(&input, &MetricsConfig::equities_daily()).expect("valid curve")
}

proptest! {
    #[test]
    fn max_drawdown_lies_in_minus_one_to_zero(start in 1.0f64..1e7, r in returns_strategy()) {
        let m = metrics(&curve(start, &r));
        prop_assert!((-1.0..=0.0).contains(&m.drawdown.max_drawdown), "{}", m.drawdown.max_drawdown);
        prop_assert!(m.drawdown.peak_index <= m.drawdown.trough_index);
        if let Some(rec) = m.drawdown.recovery_index {
            prop_assert!(rec >= m.drawdown.trough_index);
        }
        prop_assert!(m.drawdown.duration_periods <= m.drawdown.longest_duration_periods);
        prop_assert!(m.drawdown.longest_duration_periods <= m.periods);
    }

    #[test]
    fn monotone_increasing_curve_has_no_drawdown(
        start in 1.0f64..1e7,
        r in prop::collection::vec(0.0f64..0.2, 1..300),
    ) {
        let m = metrics(&curve(start, &r));
        prop_assert_eq!(m.drawdown.max_drawdown, 0.0);
        prop_assert_eq!(m.drawdown.duration_periods, 0);
        prop_assert_eq!(m.drawdown.longest_duration_periods, 0);
        prop_assert_eq!(m.calmar, None);
    }

    #[test]
    fn tail_risk_is_ordered(start in 1.0f64..1e7, r in returns_strategy()) {
        let t = metrics(&curve(start, &r)).tail;
        prop_assert!(t.historical_99.var <= t.historical_95.var);
        prop_assert!(t.historical_95.cvar <= t.historical_95.var);
        prop_assert!(t.historical_99.cvar <= t.historical_99.var);
        prop_assert!(t.historical_99.cvar <= t.historical_95.cvar + 1e-15);
        if let (Some(n95), Some(n99)) = (t.normal_95, t.normal_99) {
            prop_assert!(n99.var <= n95.var);
            prop_assert!(n95.cvar <= n95.var);
            prop_assert!(n99.cvar <= n95.cvar);
        }
    }

    #[test]
    fn combined_tail_risk_equals_the_single_measures(r in prop::collection::vec(-0.5f64..0.5, 1..2_000)) {
        // tail_risk selects the 5 % rank inside the part the 1 % selection
        // left above it; it must agree exactly with independent selections.
        let t = tail_risk(&r).expect("valid");
        prop_assert_eq!(t.historical_95.var, var_historical(&r, 0.05).expect("valid"));
        prop_assert_eq!(t.historical_99.var, var_historical(&r, 0.01).expect("valid"));
        prop_assert_eq!(t.historical_95.var, percentile(&r, 0.05).expect("valid"));
        prop_assert_eq!(t.historical_95.cvar, cvar_historical(&r, 0.05).expect("valid"));
        prop_assert_eq!(t.historical_99.cvar, cvar_historical(&r, 0.01).expect("valid"));
        prop_assert_eq!(t.normal_95.map(|v| v.var), var_normal(&r, 0.05).expect("valid"));
        prop_assert_eq!(t.normal_99.map(|v| v.cvar), cvar_normal(&r, 0.01).expect("valid"));
        // And with a full sort, numpy-style.
        let mut sorted = r.clone();
        sorted.sort_by(f64::total_cmp);
        let h = (sorted.len() - 1) as f64 * 0.05;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        let expected = sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]);
        prop_assert!((t.historical_95.var - expected).abs() <= 1e-15);
    }

    #[test]
    fn single_label_breakdown_equals_the_whole(
        start in 1.0f64..1e7,
        r in returns_strategy(),
        held in prop::collection::vec(any::<bool>(), 301),
        trades in trades_strategy(320),
    ) {
        let eq = curve(start, &r);
        let positions: Vec<f64> = held[..eq.len()].iter().map(|&h| f64::from(u8::from(h))).collect();
        let input = PerformanceInput { equity: &eq, positions: Some(&positions), trades: &trades };
        let config = MetricsConfig::equities_daily();
        let whole = compute(&input, &config).expect("valid");
        let labels = vec!["all"; r.len()];
        let by = breakdown(&input, &labels, &config).expect("valid");
        prop_assert_eq!(by.len(), 1);
        prop_assert_eq!(&by["all"], &whole);
    }

    #[test]
    fn a_partition_of_labels_recomposes_counts_and_growth(
        r in returns_strategy(),
        raw_labels in prop::collection::vec(0u8..4, 300),
        trades in trades_strategy(320),
    ) {
        let eq = curve(100.0, &r);
        let labels = &raw_labels[..r.len()];
        let input = PerformanceInput { equity: &eq, positions: None, trades: &trades };
        let config = MetricsConfig::equities_daily();
        let whole = compute(&input, &config).expect("valid");
        let by = breakdown(&input, labels, &config).expect("valid");
        prop_assert_eq!(by.values().map(|m| m.periods).sum::<usize>(), whole.periods);
        prop_assert_eq!(by.values().map(|m| m.trades.count).sum::<usize>(), whole.trades.count);
        let growth: f64 = by.values().map(|m| 1.0 + m.total_return).product();
        prop_assert!(close(growth, 1.0 + whole.total_return));
    }

    #[test]
    fn scaling_the_curve_changes_no_ratio(
        start in 1.0f64..1e6,
        scale in 1e-3f64..1e3,
        r in returns_strategy(),
    ) {
        let eq = curve(start, &r);
        let scaled: Vec<EquityPoint> = eq
            .iter()
            .map(|p| EquityPoint { ts: p.ts, equity: p.equity * scale })
            .collect();
        let a = metrics(&eq);
        let b = metrics(&scaled);
        prop_assert!(close(a.total_return, b.total_return));
        prop_assert!(close(a.cagr, b.cagr));
        prop_assert!(close(a.drawdown.max_drawdown, b.drawdown.max_drawdown));
        prop_assert!(close_opt(a.annual_volatility, b.annual_volatility));
        prop_assert!(close_opt(a.sharpe, b.sharpe), "{:?} {:?}", a.sharpe, b.sharpe);
        prop_assert!(close_opt(a.sortino, b.sortino));
        prop_assert!(close_opt(a.calmar, b.calmar));
        prop_assert!(close(a.tail.historical_95.var, b.tail.historical_95.var));
        prop_assert!(close(a.tail.historical_99.cvar, b.tail.historical_99.cvar));
        prop_assert!(close_opt(a.tail.normal_95.map(|v| v.var), b.tail.normal_95.map(|v| v.var)));
        prop_assert!(close_opt(a.tail.normal_99.map(|v| v.cvar), b.tail.normal_99.map(|v| v.cvar)));
    }
}
