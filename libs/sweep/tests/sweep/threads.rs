//! One core and all cores give identical outcomes, in the order of the sets.

use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, sweep_sma};

use crate::helpers::btc;

#[test]
fn all_cores_equal_one_core_on_a_grid() {
    let (inst, bars) = btc();
    let series = Series::new(&inst, &bars[..20_000]).unwrap();
    let mut sets = SmaParams::grid((5..=50).step_by(3), (10..=200).step_by(7), false);
    sets.extend(SmaParams::grid(
        (5..=50).step_by(9),
        (10..=200).step_by(13),
        true,
    ));
    assert!(sets.len() > 10 * grodt_sweep::GROUP, "{}", sets.len());
    let config = SweepConfig::default();
    let one = sweep_sma(&series, &sets, &config, Threads::One).unwrap();
    let all = sweep_sma(&series, &sets, &config, Threads::All).unwrap();
    assert_eq!(one.len(), sets.len());
    assert!(one.iter().zip(&sets).all(|(o, p)| o.params == *p));
    assert_eq!(one, all);
    assert!(one.iter().all(|o| o.fills > 0));
}
