//! Every fill, trade, refusal and the final equity of the engine, on the real samples.

use grodt_core::Decimal;
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, sweep_sma};

use crate::helpers::{assert_parity, btc, grid_sample, spy};

fn with_costs(bps: u32, rate: &str) -> SweepConfig {
    SweepConfig {
        backtest: BacktestConfig {
            slippage: SlippageSpec::FixedBps {
                bps: Decimal::from(bps),
            },
            commission: CommissionSpec::Percentage {
                rate: rate.parse().unwrap(),
            },
            ..BacktestConfig::default()
        },
        ..SweepConfig::default()
    }
}

/// The traced sets and the batch agree (the batch runs the same lane code).
fn batch_matches_trace(series: &Series, sets: &[SmaParams], config: &SweepConfig) {
    let batch = sweep_sma(series, sets, config, Threads::One).unwrap();
    for (b, &p) in batch.iter().zip(sets) {
        let (t, _) = grodt_sweep::trace_sma(series, p, config).unwrap();
        assert_eq!(*b, t, "{p:?}");
    }
}

#[test]
fn spy_daily_grid_sample_equals_the_engine_fill_by_fill() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let sets = grid_sample(3);
    assert!(sets.len() >= 40, "{}", sets.len());
    for config in [SweepConfig::default(), with_costs(5, "0.0005")] {
        let mut trades = 0;
        for &p in &sets {
            let (out, _, _) = assert_parity(&series, &bars, p, &config);
            trades += out.trades;
        }
        assert!(trades > 1_000, "{trades}");
        batch_matches_trace(&series, &sets, &config);
    }
}

#[test]
fn btc_minute_grid_sample_equals_the_engine_fill_by_fill() {
    let (inst, bars) = btc();
    assert_eq!(bars.len(), 130_708);
    let series = Series::new(&inst, &bars).unwrap();
    let sets = grid_sample(17);
    // With costs all-in, the fee always exceeds the residue of a fractional
    // size and the venue refuses every entry (margin): 99% of equity leaves room.
    let costs = SweepConfig {
        fraction: "0.99".parse().unwrap(),
        ..with_costs(2, "0.001")
    };
    for config in [SweepConfig::default(), costs] {
        for &p in &sets {
            let (out, _, _) = assert_parity(&series, &bars, p, &config);
            assert!(out.fills > 100 && out.rejected == 0, "{p:?}: {out:?}");
        }
    }
    let (out, _, _) = assert_parity(&series, &bars, sets[0], &with_costs(2, "0.001"));
    assert!(out.fills == 0 && out.rejected > 100, "{out:?}");
}

/// The integer cash book (no commission, fraction 1) and the Decimal book give
/// the same outcomes, and both the engine's fills, with and without slippage.
#[test]
fn integer_and_decimal_books_agree_with_the_engine() {
    let (inst, bars) = btc();
    let series = Series::new(&inst, &bars[..40_000]).unwrap();
    let sets = grid_sample(23);
    for bps in [0u32, 3] {
        let int = SweepConfig {
            backtest: BacktestConfig {
                slippage: SlippageSpec::FixedBps {
                    bps: Decimal::from(bps),
                },
                ..BacktestConfig::default()
            },
            ..SweepConfig::default()
        };
        let dec = SweepConfig {
            integer_book: false,
            ..int.clone()
        };
        let a = sweep_sma(&series, &sets, &int, Threads::One).unwrap();
        let b = sweep_sma(&series, &sets, &dec, Threads::One).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|o| o.fills > 50), "{a:?}");
        for &p in sets.iter().step_by(3) {
            assert_parity(&series, &bars[..40_000], p, &int);
        }
    }
}

#[test]
fn refusals_are_the_engines_margin_and_minimum_size() {
    // All-in with a commission: the fee pushes the notional past the equity
    // unless the rounding residue covers it, so the venue refuses some entries.
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let config = with_costs(0, "0.001");
    let mut refused = 0;
    let mut filled = 0;
    for p in [
        SmaParams {
            fast: 10,
            slow: 30,
            long_short: false,
        },
        SmaParams {
            fast: 5,
            slow: 20,
            long_short: true,
        },
    ] {
        let (out, _, _) = assert_parity(&series, &bars, p, &config);
        refused += out.rejected;
        filled += out.fills;
    }
    assert!(
        refused > 10 && filled > 10,
        "{refused} refused, {filled} filled"
    );

    // Too little cash for one share: every entry is below the minimum size.
    let poor = SweepConfig {
        backtest: BacktestConfig {
            starting_cash: Decimal::from(50),
            ..BacktestConfig::default()
        },
        ..SweepConfig::default()
    };
    let p = SmaParams {
        fast: 10,
        slow: 30,
        long_short: true,
    };
    let (out, trace, _) = assert_parity(&series, &bars, p, &poor);
    assert!(out.rejected > 10 && trace.fills.is_empty(), "{out:?}");
    assert_eq!(out.final_equity, Decimal::from(50));

    // Half of equity per entry, with slippage.
    let half = SweepConfig {
        fraction: "0.5".parse().unwrap(),
        ..with_costs(10, "0.0002")
    };
    assert_parity(&series, &bars, p, &half);
}

#[test]
fn unsupported_settings_are_refused_by_name() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars[..100]).unwrap();
    let p = [SmaParams {
        fast: 2,
        slow: 5,
        long_short: false,
    }];
    let mut config = SweepConfig::default();
    config.backtest.commission = CommissionSpec::PerShare {
        rate: Decimal::ONE,
        minimum: Decimal::ONE,
    };
    let e = sweep_sma(&series, &p, &config, Threads::One).unwrap_err();
    assert!(e.to_string().contains("commission"), "{e}");
    let bad = [SmaParams {
        fast: 5,
        slow: 5,
        long_short: false,
    }];
    let e = sweep_sma(&series, &bad, &SweepConfig::default(), Threads::One).unwrap_err();
    assert!(e.to_string().contains("fast"), "{e}");
}
