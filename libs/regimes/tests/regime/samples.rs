//! The classifier on real samples: SPY daily and BTC/USDT 1-minute.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Instrument};
use grodt_regimes::{Classifier, Decision, Regime, RegimeConfig, classify};

fn load(file: &str, inst: &Instrument) -> Vec<Bar> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("sample file");
    parse_csv(&text, inst).expect("sample parses")
}

/// Share of decisions per regime (in force), printed as a table.
fn shares(name: &str, d: &[Decision]) -> BTreeMap<Regime, f64> {
    let mut m: BTreeMap<Regime, f64> = Regime::ALL.iter().map(|&r| (r, 0.0)).collect();
    for x in d {
        *m.entry(x.regime).or_default() += 1.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "a share")]
    let n = d.len() as f64;
    let changes = d.iter().filter(|x| x.changed).count();
    println!("{name}: {} decisions, {changes} changes", d.len());
    for (r, v) in &mut m {
        *v /= n;
        println!("  {:<16} {:>6.1}%", r.name(), *v * 100.0);
    }
    m
}

/// Year of a UTC nanosecond timestamp (civil-from-days).
fn year(ts: i64) -> i64 {
    let days = ts.div_euclid(86_400_000_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

fn year_shares(d: &[Decision], y: i64) -> BTreeMap<Regime, usize> {
    let mut m = BTreeMap::new();
    for x in d.iter().filter(|x| year(x.ts) == y) {
        *m.entry(x.regime).or_insert(0) += 1;
    }
    m
}

/// Classifying half, persisting the state as JSON, restoring and classifying the
/// rest gives the decisions of one pass.
fn assert_restore_identical(bars: &[Bar], precision: u8, whole: &[Decision]) {
    let mid = bars.len() / 2;
    let mut c = Classifier::new(RegimeConfig::default(), precision).unwrap();
    let mut split: Vec<Decision> = bars[..mid].iter().filter_map(|b| c.on_bar(b)).collect();
    let json = serde_json::to_string(&c).unwrap();
    drop(c);
    let mut restored: Classifier = serde_json::from_str(&json).unwrap();
    split.extend(bars[mid..].iter().filter_map(|b| restored.on_bar(b)));
    assert_eq!(split.len(), whole.len());
    assert!(split == whole, "restored run differs");
}

#[test]
fn spy_daily_regimes() {
    let inst = Instrument::equity("SPY", 4, 0);
    let bars = load("spy_1d_1998-2021.csv", &inst);
    let d = classify(RegimeConfig::default(), inst.price_precision, &bars).unwrap();
    let m = shares("SPY 1d 1998-2021", &d);
    for y in [2008, 2013, 2017, 2020] {
        println!("  {y}: {:?}", year_shares(&d, y));
    }
    // every bar after warm-up is evaluated
    assert_eq!(d.len(), bars.len() - 262);
    assert!(m.values().all(|&v| v > 0.0), "every regime occurs: {m:?}");
    // the crises: HighVolatility occurs, and is 2008's most frequent regime
    for y in [2008, 2020] {
        assert!(
            year_shares(&d, y).contains_key(&Regime::HighVolatility),
            "{y}"
        );
    }
    let y2008 = year_shares(&d, 2008);
    assert_eq!(
        y2008.iter().max_by_key(|e| e.1).map(|e| *e.0),
        Some(Regime::HighVolatility)
    );
    assert!(y2008.contains_key(&Regime::TrendingDown));
    // the long uptrends: TrendingUp on most of the year's decisions
    for y in [2013, 2017] {
        let m = year_shares(&d, y);
        let total: usize = m.values().sum();
        let up = m.get(&Regime::TrendingUp).copied().unwrap_or(0);
        assert!(2 * up > total, "{y}: {m:?}");
        assert!(
            m.get(&Regime::TrendingDown).copied().unwrap_or(0) * 10 < total,
            "{y}: {m:?}"
        );
    }
    assert_restore_identical(&bars, inst.price_precision, &d);
    // the same prices at one more decimal: the same regimes
    let scaled: Vec<Bar> = bars
        .iter()
        .map(|b| Bar {
            open: b.open * 10,
            high: b.high * 10,
            low: b.low * 10,
            close: b.close * 10,
            ..*b
        })
        .collect();
    let s = classify(RegimeConfig::default(), inst.price_precision + 1, &scaled).unwrap();
    let key = |d: &[Decision]| d.iter().map(|x| (x.ts, x.regime)).collect::<Vec<_>>();
    assert_eq!(key(&s), key(&d));
}

#[test]
fn btc_one_minute_regimes() {
    let inst = Instrument::equity("BTCUSDT", 2, 8);
    let bars = load("btcusdt_1m_2025-05-20_2025-08-18.csv", &inst);
    let d = classify(RegimeConfig::default(), inst.price_precision, &bars).unwrap();
    let m = shares("BTCUSDT 1m 2025-05-20..08-18", &d);
    assert!(d.windows(2).all(|w| w[1].ts - w[0].ts >= 300_000_000_000));
    assert!(m.values().all(|&v| v > 0.0), "every regime occurs: {m:?}");
    assert_restore_identical(&bars, inst.price_precision, &d);
}

/// `regime_per_bar` carries each decision's regime to the bars up to the next
/// one (five 1-minute bars per evaluation on BTC), `None` before the first.
#[test]
fn regime_per_bar_carries_decisions_forward() {
    let inst = Instrument::equity("BTCUSDT", 2, 8);
    let bars = load("btcusdt_1m_2025-05-20_2025-08-18.csv", &inst);
    let bars = &bars[..5_000];
    let d = classify(RegimeConfig::default(), inst.price_precision, bars).unwrap();
    let per_bar = grodt_regimes::regime_per_bar(RegimeConfig::default(), 2, bars).unwrap();
    assert_eq!(per_bar.len(), bars.len());
    let mut next = d.iter().peekable();
    let mut now = None;
    for (bar, r) in bars.iter().zip(&per_bar) {
        if let Some(x) = next.next_if(|x| x.ts == bar.ts) {
            now = Some(x.regime);
        }
        assert_eq!(*r, now, "bar {}", bar.ts);
    }
    assert!(next.peek().is_none());
    assert!(per_bar[0].is_none() && per_bar.last().unwrap().is_some());
}
