//! The intrabar path rule: where a bar's price went between open and close.
//!
//! A bar that closes at or above its open is assumed to have traded
//! open → low → high → close; a bar that closes below its open,
//! open → high → low → close (each bar first moves against its final
//! direction). Prices move continuously along each segment, so an order level is
//! reached at a definite distance along the path; of two OCO exits, the one
//! reached first wins. A level already passed at the open fills at the open
//! (a gap), which is worse than the level for stops and better for limits.

use grodt_core::Bar;

/// The four path points of a bar.
pub fn path_of(bar: &Bar) -> [i64; 4] {
    if bar.close >= bar.open {
        [bar.open, bar.low, bar.high, bar.close]
    } else {
        [bar.open, bar.high, bar.low, bar.close]
    }
}

/// Direction of the price move an order waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Price must come down to the level (buy limit, sell stop).
    Down,
    /// Price must go up to the level (sell limit, buy stop).
    Up,
}

/// Where along the path a level was first reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Distance travelled along the path (raw price units) when reached.
    pub dist: i64,
    /// Price at that point: the open on a gap, else the level itself.
    pub price: i64,
}

/// First point at or after `start` (a distance) where the price reaches `level`;
/// `strict` demands trading through it (`<`/`>`) rather than touching (`<=`/`>=`).
pub fn first_reach(
    path: &[i64; 4],
    start: i64,
    level: i64,
    reach: Reach,
    strict: bool,
) -> Option<Hit> {
    let ok = |p: i64| match (reach, strict) {
        (Reach::Down, true) => p < level,
        (Reach::Down, false) => p <= level,
        (Reach::Up, true) => p > level,
        (Reach::Up, false) => p >= level,
    };
    let mut cum = 0i64;
    // Price at `start`: walk the segments to locate it.
    let mut first = true;
    for w in path.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = (b - a).abs();
        if cum + len < start {
            cum += len;
            continue;
        }
        // Portion of this segment from `from` (a price) to b.
        let from = if start > cum {
            a + (b - a).signum() * (start - cum)
        } else {
            a
        };
        let at = cum.max(start);
        if first {
            first = false;
            if ok(from) {
                return Some(Hit {
                    dist: at,
                    price: from,
                });
            }
        }
        let moving_toward = match reach {
            Reach::Down => b < from,
            Reach::Up => b > from,
        };
        if moving_toward && ok(b) {
            return Some(Hit {
                dist: at + (from - level).abs(),
                price: level,
            });
        }
        cum += len;
    }
    if first {
        // start beyond the path: only the close remains.
        let c = path[3];
        return ok(c).then_some(Hit {
            dist: start,
            price: c,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(o: i64, h: i64, l: i64, c: i64) -> Bar {
        Bar {
            ts: 0,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 1,
        }
    }

    #[test]
    fn bullish_bar_goes_low_first() {
        let p = path_of(&bar(100, 110, 95, 105));
        assert_eq!(p, [100, 95, 110, 105]);
        let sl = first_reach(&p, 0, 97, Reach::Down, false).unwrap();
        let tp = first_reach(&p, 0, 108, Reach::Up, true).unwrap();
        assert!(
            sl.dist < tp.dist,
            "stop-loss reached before take-profit on an up bar"
        );
        assert_eq!(sl, Hit { dist: 3, price: 97 });
        assert_eq!(
            tp,
            Hit {
                dist: 5 + 13,
                price: 108
            }
        );
    }

    #[test]
    fn bearish_bar_goes_high_first_and_gaps_fill_at_open() {
        let p = path_of(&bar(100, 104, 90, 92));
        assert_eq!(p, [100, 104, 90, 92]);
        assert_eq!(
            first_reach(&p, 0, 101, Reach::Down, true),
            Some(Hit {
                dist: 0,
                price: 100
            })
        );
        assert_eq!(
            first_reach(&p, 0, 99, Reach::Down, false),
            Some(Hit {
                dist: 4 + 5,
                price: 99
            })
        );
    }

    #[test]
    fn trade_through_vs_touch() {
        let p = path_of(&bar(100, 105, 95, 101));
        assert_eq!(first_reach(&p, 0, 95, Reach::Down, true), None);
        assert!(first_reach(&p, 0, 95, Reach::Down, false).is_some());
        assert_eq!(first_reach(&p, 0, 105, Reach::Up, true), None);
    }

    #[test]
    fn search_resumes_after_a_trigger() {
        // up bar 100 -> 95 -> 110 -> 105; a buy stop at 108 triggers at dist 18,
        // then a buy limit at 107 is only reachable on the way down to the close.
        let p = path_of(&bar(100, 110, 95, 105));
        let t = first_reach(&p, 0, 108, Reach::Up, false).unwrap();
        assert_eq!(t.dist, 18);
        let l = first_reach(&p, t.dist, 107, Reach::Down, false).unwrap();
        assert_eq!(
            l,
            Hit {
                dist: 20 + 3,
                price: 107
            }
        );
        assert_eq!(first_reach(&p, t.dist, 100, Reach::Down, false), None);
    }
}
