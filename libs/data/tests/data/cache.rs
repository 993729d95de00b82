//! The frame cache over the catalog: hits, misses, evictions, byte budget, checksum invalidation.

use grodt_data::Bars;
use grodt_data::aggregate::{Alignment, Timeframe};
use grodt_data::cache::{CacheKey, FrameCache};
use grodt_data::calendar::Calendar;
use grodt_data::catalog::TimeRange;

use crate::{catalog, request, ts};

fn key(id: &grodt_data::DatasetId, range: TimeRange, tf: Option<Timeframe>) -> CacheKey {
    CacheKey {
        dataset: id.clone(),
        range,
        timeframe: tf,
        alignment: Alignment::Utc,
    }
}

#[test]
fn hits_misses_evictions_and_invalidation() {
    let (_d, cat) = catalog();
    let spy = cat
        .import_csv(&request(
            "spy_1d_1998-2021.csv",
            ("q", "SPY", "1d"),
            Calendar::UsEquityDaily,
        ))
        .unwrap();
    let aapl = cat
        .import_csv(&request(
            "aapl_1d_1998-2021_unadjusted.csv",
            ("q", "AAPL", "1d"),
            Calendar::UsEquityDaily,
        ))
        .unwrap();
    // One full daily dataset is 5849 * 6 * 8 bytes = 280,752 bytes; the budget holds two.
    let cache = FrameCache::new(600_000);
    let all_spy = key(&spy.id, TimeRange::ALL, None);
    let f1 = cache.get(&cat, &all_spy).unwrap();
    assert_eq!(f1.height(), 5849);
    let f2 = cache.get(&cat, &all_spy).unwrap();
    assert!(f1.equals(&f2));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.entries, s.evictions), (1, 1, 1, 0));
    assert_eq!(s.bytes, 280_752);

    // Weekly bars of AAPL: aggregated on load, cached under their own key.
    let weekly = cache
        .get(&cat, &key(&aapl.id, TimeRange::ALL, Some(Timeframe::W1)))
        .unwrap();
    let wb = Bars::from_frame(&weekly, aapl.price_scale, aapl.volume_scale).unwrap();
    assert_eq!(wb.ts[0], ts("1997-12-29T00:00:00Z"));
    let s = cache.stats();
    assert_eq!((s.misses, s.entries), (2, 2));

    // A third frame pushes out the least recently used (the SPY frame was used before the weekly one).
    let all_aapl = key(&aapl.id, TimeRange::ALL, None);
    cache.get(&cat, &all_aapl).unwrap();
    let s = cache.stats();
    assert_eq!((s.evictions, s.entries), (1, 2));
    assert!(s.bytes <= s.budget_bytes);
    cache.get(&cat, &all_spy).unwrap();
    assert_eq!(cache.stats().misses, 4, "evicted entry is a miss");

    // Re-import SPY with other content: the cached frame is stale and reloaded.
    let mut again = request(
        "aapl_1d_1998-2021_unadjusted.csv",
        ("q", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    again.replace = true;
    cat.import_csv(&again).unwrap();
    let reloaded = cache.get(&cat, &all_spy).unwrap();
    let s = cache.stats();
    assert_eq!((s.invalidations, s.misses), (1, 5));
    let first_close = reloaded.column("close").unwrap().i64().unwrap().get(0);
    assert_eq!(first_close, Some(162_500), "AAPL's 16.25, not SPY's 97.36");
    assert!((s.hit_ratio() - 1.0 / 6.0).abs() < 1e-12);

    // A frame larger than the budget is served but not kept.
    let tiny = FrameCache::new(1_000);
    tiny.get(&cat, &all_aapl).unwrap();
    assert_eq!((tiny.stats().entries, tiny.stats().bytes), (0, 0));
}
