//! Random series and random parameters: the sweep's trades are the engine's.

use grodt_core::{Bar, Decimal, Instrument};
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_sweep::{Series, SmaParams, SweepConfig};
use proptest::prelude::*;

use crate::helpers::assert_parity;

/// A random walk of raw prices with small moves (so ties and equal closes
/// happen), bars one minute apart.
fn series(steps: &[i64], start: i64) -> Vec<Bar> {
    let mut price = start;
    let mut out = Vec::with_capacity(steps.len());
    for (k, &s) in steps.iter().enumerate() {
        let open = price;
        let close = (price + s).max(1);
        let jitter = (k as i64 % 3) * (start / 100).max(1);
        out.push(Bar {
            ts: 1_700_000_000_000_000_000 + k as i64 * 60_000_000_000,
            open,
            high: open.max(close) + jitter,
            low: (open.min(close) - jitter).max(1),
            close,
            volume: 1_000 + k as i64,
        });
        price = close + s.signum() * (k as i64 % 2);
        price = price.max(1);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_series_and_parameters_match_the_engine(
        steps in prop::collection::vec(-40i64..=40, 30..400),
        start in 500i64..20_000,
        fast in 1u32..15,
        extra in 1u32..25,
        long_short in any::<bool>(),
        size_precision in prop::sample::select(vec![0u8, 3]),
        bps in prop::sample::select(vec![0u32, 3, 25]),
        rate in prop::sample::select(vec!["none", "0", "0.0005", "0.003"]),
        fraction in prop::sample::select(vec!["1", "0.5", "0.97"]),
        cash in prop::sample::select(vec![1_000i64, 100_000]),
        integer_book in any::<bool>(),
    ) {
        let inst = Instrument::equity("X", 2, size_precision);
        let bars = series(&steps, start);
        let s = Series::new(&inst, &bars).unwrap();
        let config = SweepConfig {
            backtest: BacktestConfig {
                starting_cash: Decimal::from(cash),
                slippage: if bps == 0 { SlippageSpec::None } else { SlippageSpec::FixedBps { bps: Decimal::from(bps) } },
                commission: if rate == "none" {
                    CommissionSpec::None
                } else {
                    CommissionSpec::Percentage { rate: rate.parse().unwrap() }
                },
                ..BacktestConfig::default()
            },
            fraction: fraction.parse().unwrap(),
            integer_book,
            ..SweepConfig::default()
        };
        let p = SmaParams { fast, slow: fast + extra, long_short };
        assert_parity(&s, &bars, p, &config);
    }
}

/// Prices too large for i64 window products take the i128 path: same trades.
#[test]
fn large_prices_take_the_i128_path_with_the_same_trades() {
    let steps: Vec<i64> = (0..600)
        .map(|k: i64| ((k * 7919) % 41 - 20) * 1_000_000_000_000)
        .collect();
    let bars = series(&steps, 400_000_000_000_000);
    // 4e14 raw * 200^2 > 2^61: the i64 bound fails.
    assert!(bars.iter().all(|b| b.close > 300_000_000_000_000));
    let inst = Instrument::equity("BIG", 8, 6);
    let s = Series::new(&inst, &bars).unwrap();
    let config = SweepConfig {
        backtest: BacktestConfig {
            starting_cash: Decimal::from(1_000_000_000_i64),
            ..BacktestConfig::default()
        },
        ..SweepConfig::default()
    };
    let mut fills = 0;
    for (fast, slow) in [(3, 200), (5, 20), (10, 150)] {
        let p = SmaParams {
            fast,
            slow,
            long_short: true,
        };
        let (out, _, _) = assert_parity(&s, &bars, p, &config);
        fills += out.fills;
    }
    assert!(fills > 10, "{fills}");
}
