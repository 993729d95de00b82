//! Streaming technical indicators (SMA, EMA, ATR, rolling VWAP) over f64, O(1) per update
//! and no allocation after construction, and exact integer variants over raw fixed-point
//! values (`SmaRaw`, `AtrRaw`, `RollingVwapRaw`).
//!
//! Architecture invariant: pure computation, no I/O; depends on nothing heavier than
//! std and serde. Indicators may use f64 (they never touch money); each `update`
//! returns `None` until enough input has been seen. `AtrRaw` and `RollingVwapRaw`
//! hold integers only, so their state serializes (serde) and restores bit for bit;
//! a deserialized state is checked for consistency (ring indices, sums).

/// A windowed sum with Neumaier compensation, so long runs do not drift.
#[derive(Clone, Debug)]
struct WindowSum {
    buf: Vec<f64>,
    head: usize,
    len: usize,
    sum: f64,
    comp: f64,
}

impl WindowSum {
    fn new(period: usize) -> Self {
        Self {
            buf: vec![0.0; period.max(1)],
            head: 0,
            len: 0,
            sum: 0.0,
            comp: 0.0,
        }
    }

    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    /// Pushes `x`, dropping the oldest value once full.
    fn push(&mut self, x: f64) {
        let cap = self.buf.len();
        if self.len == cap {
            let old = self.buf[self.head];
            self.add(-old);
        } else {
            self.len += 1;
        }
        self.buf[self.head] = x;
        // A branch instead of `%`: a division per update costs more than the rest.
        self.head += 1;
        if self.head == cap {
            self.head = 0;
        }
        self.add(x);
    }

    fn full(&self) -> bool {
        self.len == self.buf.len()
    }

    fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

/// Simple moving average over `period` values.
#[derive(Clone, Debug)]
pub struct Sma {
    window: WindowSum,
    period: f64,
}

impl Sma {
    /// A new SMA; `period` of 0 is treated as 1.
    #[allow(clippy::cast_precision_loss, reason = "periods are small")]
    pub fn new(period: usize) -> Self {
        Self {
            window: WindowSum::new(period),
            period: period.max(1) as f64,
        }
    }

    /// Adds a value; returns the average once `period` values were seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.window.push(x);
        self.value()
    }

    /// Current value, if warmed up.
    pub fn value(&self) -> Option<f64> {
        self.window
            .full()
            .then(|| self.window.value() / self.period)
    }
}

/// Simple moving average over raw fixed-point integers (prices at one precision):
/// an exact `i128` window sum, so comparisons between averages can be made exactly.
#[derive(Clone, Debug)]
pub struct SmaRaw {
    buf: Vec<i64>,
    head: usize,
    len: usize,
    sum: i128,
}

impl SmaRaw {
    /// A new raw SMA; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self {
            buf: vec![0; period.max(1)],
            head: 0,
            len: 0,
            sum: 0,
        }
    }

    /// Adds a raw value; returns the exact window sum once `period` values were seen.
    pub fn update(&mut self, x: i64) -> Option<i128> {
        let cap = self.buf.len();
        if self.len == cap {
            self.sum -= i128::from(self.buf[self.head]);
        } else {
            self.len += 1;
        }
        self.buf[self.head] = x;
        self.head += 1;
        if self.head == cap {
            self.head = 0;
        }
        self.sum += i128::from(x);
        self.sum()
    }

    /// The exact window sum, if warmed up.
    pub fn sum(&self) -> Option<i128> {
        (self.len == self.buf.len()).then_some(self.sum)
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.buf.len()
    }

    /// The average in raw units, if warmed up.
    #[allow(
        clippy::cast_precision_loss,
        reason = "an f64 view of an exact average"
    )]
    pub fn value(&self) -> Option<f64> {
        self.sum().map(|s| s as f64 / self.buf.len() as f64)
    }
}

/// Exponential moving average with `alpha = 2 / (period + 1)`, seeded with the SMA of
/// the first `period` values (the TA-Lib and backtrader convention).
#[derive(Clone, Debug)]
pub struct Ema {
    alpha: f64,
    seed: Sma,
    value: Option<f64>,
}

impl Ema {
    /// A new EMA; `period` of 0 is treated as 1.
    #[allow(clippy::cast_precision_loss, reason = "periods are small")]
    pub fn new(period: usize) -> Self {
        let p = period.max(1);
        Self {
            alpha: 2.0 / (p as f64 + 1.0),
            seed: Sma::new(p),
            value: None,
        }
    }

    /// Adds a value; returns the EMA once warmed up.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.value = match self.value {
            Some(v) => Some(v + self.alpha * (x - v)),
            None => self.seed.update(x),
        };
        self.value
    }

    /// Current value, if warmed up.
    pub const fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Average true range with Wilder's smoothing, seeded with the mean of the first
/// `period` true ranges. The first bar's true range is `high - low`.
#[derive(Clone, Debug)]
pub struct Atr {
    period: f64,
    seed: Sma,
    prev_close: Option<f64>,
    value: Option<f64>,
}

impl Atr {
    /// A new ATR; `period` of 0 is treated as 1.
    #[allow(clippy::cast_precision_loss, reason = "periods are small")]
    pub fn new(period: usize) -> Self {
        let p = period.max(1);
        Self {
            period: p as f64,
            seed: Sma::new(p),
            prev_close: None,
            value: None,
        }
    }

    /// Adds a bar; returns the ATR once warmed up.
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let tr = match self.prev_close {
            Some(pc) => (high - low).max((high - pc).abs()).max((low - pc).abs()),
            None => high - low,
        };
        self.prev_close = Some(close);
        self.value = match self.value {
            Some(v) => Some(v + (tr - v) / self.period),
            None => self.seed.update(tr),
        };
        self.value
    }

    /// Current value, if warmed up.
    pub const fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Volume-weighted average of the typical price `(h + l + c) / 3` over the last
/// `period` bars. Returns `None` until warmed up or while the window's volume is zero.
#[derive(Clone, Debug)]
pub struct RollingVwap {
    pv: WindowSum,
    vol: WindowSum,
}

impl RollingVwap {
    /// A new rolling VWAP; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self {
            pv: WindowSum::new(period),
            vol: WindowSum::new(period),
        }
    }

    /// Adds a bar; returns the VWAP once warmed up.
    pub fn update(&mut self, high: f64, low: f64, close: f64, volume: f64) -> Option<f64> {
        let typical = (high + low + close) / 3.0;
        self.pv.push(typical * volume);
        self.vol.push(volume);
        self.value()
    }

    /// Current value, if warmed up and the window has volume.
    pub fn value(&self) -> Option<f64> {
        let v = self.vol.value();
        (self.vol.full() && v > 0.0).then(|| self.pv.value() / v)
    }
}

/// A ring of the last `period` i128 values with their exact sum. Sums use wrapping
/// arithmetic, so the window sum is exact whenever the true sum fits an i128
/// (modular arithmetic), and nothing panics on absurd inputs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RingSumState")]
struct RingSum {
    buf: Vec<i128>,
    head: usize,
    len: usize,
    sum: i128,
}

/// The serialized form of a [`RingSum`], checked on the way in.
#[derive(serde::Deserialize)]
struct RingSumState {
    buf: Vec<i128>,
    head: usize,
    len: usize,
    sum: i128,
}

impl TryFrom<RingSumState> for RingSum {
    type Error = String;

    fn try_from(s: RingSumState) -> Result<Self, String> {
        let cap = s.buf.len();
        if cap == 0 || s.len > cap || s.head >= cap || (s.len < cap && s.head != s.len) {
            return Err(format!(
                "inconsistent ring: capacity {cap}, len {}, head {}",
                s.len, s.head
            ));
        }
        let live = s.buf[..s.len].iter().fold(0i128, |a, &x| a.wrapping_add(x));
        if live != s.sum {
            return Err("ring sum does not match its values".into());
        }
        Ok(Self {
            buf: s.buf,
            head: s.head,
            len: s.len,
            sum: s.sum,
        })
    }
}

impl RingSum {
    fn new(period: usize) -> Self {
        Self {
            buf: vec![0; period.max(1)],
            head: 0,
            len: 0,
            sum: 0,
        }
    }

    fn push(&mut self, x: i128) {
        let cap = self.buf.len();
        if self.len == cap {
            self.sum = self.sum.wrapping_sub(self.buf[self.head]);
        } else {
            self.len += 1;
        }
        self.buf[self.head] = x;
        self.head += 1;
        if self.head == cap {
            self.head = 0;
        }
        self.sum = self.sum.wrapping_add(x);
    }

    fn full(&self) -> bool {
        self.len == self.buf.len()
    }
}

/// Average true range over raw fixed-point integers (prices at one precision) as a
/// simple average of the last `period` true ranges, kept as an exact `i128` window
/// sum. The first bar's true range is `high - low`; later ones
/// `max(high - low, |high - prev_close|, |low - prev_close|)`. Unlike [`Atr`]
/// (Wilder's smoothing in f64) its state is integers only, so it is exact,
/// scale-free in ratios, and serializes losslessly.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AtrRaw {
    trs: RingSum,
    prev_close: Option<i64>,
}

impl AtrRaw {
    /// A new raw ATR; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self {
            trs: RingSum::new(period),
            prev_close: None,
        }
    }

    /// Adds a bar (raw prices); returns the exact sum of the last `period` true
    /// ranges once `period` bars were seen.
    pub fn update(&mut self, high: i64, low: i64, close: i64) -> Option<i128> {
        let (h, l) = (i128::from(high), i128::from(low));
        let tr = match self.prev_close.map(i128::from) {
            Some(pc) => (h - l).max((h - pc).abs()).max((l - pc).abs()),
            None => h - l,
        };
        self.prev_close = Some(close);
        self.trs.push(tr);
        self.sum()
    }

    /// The exact window sum of true ranges, if warmed up.
    pub fn sum(&self) -> Option<i128> {
        self.trs.full().then_some(self.trs.sum)
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.trs.buf.len()
    }

    /// The average true range in raw units, if warmed up.
    #[allow(
        clippy::cast_precision_loss,
        reason = "an f64 view of an exact average"
    )]
    pub fn value(&self) -> Option<f64> {
        self.sum().map(|s| s as f64 / self.period() as f64)
    }
}

/// Volume-weighted average of the typical price `(h + l + c) / 3` over the last
/// `period` bars, on raw fixed-point integers, kept as exact `i128` window sums of
/// `(h + l + c) * volume`, `volume` and `h + l + c`. The VWAP is `num / den` with
/// `num = sum((h + l + c) * v)`, `den = 3 * sum(v)`; while the window's volume is
/// zero it falls back to the plain average typical price (`den = 3 * period`), so
/// bars without volume still have a value. Prices are raw price units, volumes raw
/// size units; the ratio is in raw price units whatever the size precision.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollingVwapRaw {
    pv: RingSum,
    vol: RingSum,
    tp: RingSum,
}

impl RollingVwapRaw {
    /// A new raw rolling VWAP; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self {
            pv: RingSum::new(period),
            vol: RingSum::new(period),
            tp: RingSum::new(period),
        }
    }

    /// Adds a bar (raw prices, raw volume); returns `(num, den)` once warmed up.
    pub fn update(&mut self, high: i64, low: i64, close: i64, volume: i64) -> Option<(i128, i128)> {
        let tp3 = i128::from(high) + i128::from(low) + i128::from(close);
        self.pv.push(tp3.saturating_mul(i128::from(volume)));
        self.vol.push(i128::from(volume));
        self.tp.push(tp3);
        self.fraction()
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.tp.buf.len()
    }

    /// The VWAP as an exact fraction `(num, den)` in raw price units, if warmed up.
    pub fn fraction(&self) -> Option<(i128, i128)> {
        if !self.tp.full() {
            return None;
        }
        if self.vol.sum > 0 {
            Some((self.pv.sum, 3 * self.vol.sum))
        } else {
            let n = i128::try_from(self.tp.buf.len()).unwrap_or(i128::MAX);
            Some((self.tp.sum, 3 * n))
        }
    }

    /// The VWAP in raw price units, if warmed up.
    #[allow(
        clippy::cast_precision_loss,
        reason = "an f64 view of an exact fraction"
    )]
    pub fn value(&self) -> Option<f64> {
        self.fraction().map(|(n, d)| n as f64 / d as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn sma_matches_naive_mean() {
        let xs: Vec<f64> = (0..500)
            .map(|i| 100.0 + (f64::from(i) * 0.37).sin() * 5.0)
            .collect();
        let mut s = Sma::new(30);
        for (i, &x) in xs.iter().enumerate() {
            let v = s.update(x);
            if i + 1 < 30 {
                assert!(v.is_none());
            } else {
                let naive: f64 = xs[i + 1 - 30..=i].iter().sum::<f64>() / 30.0;
                assert!(close(v.unwrap(), naive), "{i}");
            }
        }
    }

    #[test]
    fn raw_sma_is_exact() {
        let mut s = SmaRaw::new(3);
        assert_eq!(s.update(1), None);
        assert_eq!(s.update(2), None);
        assert_eq!(s.update(4), Some(7));
        assert_eq!(s.update(i64::MAX), Some(6 + i128::from(i64::MAX)));
        assert_eq!(s.value(), Some((6.0 + i64::MAX as f64) / 3.0));
    }

    #[test]
    fn ema_seeds_with_sma_then_smooths() {
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        assert_eq!(e.update(3.0), Some(2.0));
        assert_eq!(e.update(6.0), Some(4.0));
    }

    #[test]
    fn atr_uses_true_range_and_wilder_smoothing() {
        let mut a = Atr::new(2);
        assert_eq!(a.update(10.0, 8.0, 9.0), None);
        // gap up: true range = 12 - 9 = 3
        assert_eq!(a.update(12.0, 11.0, 11.5), Some(2.5));
        assert_eq!(a.update(12.0, 11.0, 11.5), Some(1.75));
    }

    #[test]
    fn vwap_weights_by_volume_and_rolls() {
        let mut v = RollingVwap::new(2);
        assert_eq!(v.update(3.0, 3.0, 3.0, 1.0), None);
        assert_eq!(v.update(6.0, 6.0, 6.0, 2.0), Some(5.0));
        assert_eq!(v.update(9.0, 9.0, 9.0, 2.0), Some(7.5));
        let mut z = RollingVwap::new(1);
        assert_eq!(z.update(1.0, 1.0, 1.0, 0.0), None);
    }

    #[test]
    fn raw_atr_is_a_simple_average_of_true_ranges() {
        let mut a = AtrRaw::new(2);
        assert_eq!(a.update(10, 8, 9), None);
        // gap up: true range = 12 - 9 = 3; first = 2
        assert_eq!(a.update(12, 11, 11), Some(5));
        // 13 - 11 = 2 (|low - prev| = 0): window [3, 2]
        assert_eq!(a.update(13, 11, 12), Some(5));
        assert_eq!(a.value(), Some(2.5));
        assert_eq!(a.period(), 2);
    }

    #[test]
    fn raw_vwap_weights_by_volume_and_falls_back_without_volume() {
        let mut v = RollingVwapRaw::new(2);
        assert_eq!(v.update(3, 3, 3, 1), None);
        assert_eq!(v.update(6, 6, 6, 2), Some((9 + 36, 9)));
        assert_eq!(v.value(), Some(5.0));
        let mut z = RollingVwapRaw::new(2);
        z.update(3, 3, 3, 0);
        assert_eq!(z.update(6, 6, 6, 0), Some((27, 6)));
        assert_eq!(z.value(), Some(4.5));
    }

    #[test]
    fn raw_state_round_trips_and_bad_state_is_refused() {
        let mut a = AtrRaw::new(3);
        let mut b = RollingVwapRaw::new(3);
        for i in 0..7_i64 {
            a.update(100 + i, 90 - i, 95);
            b.update(100 + i, 90 - i, 95, 1_000 * i);
        }
        let a2: AtrRaw = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        let b2: RollingVwapRaw = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!((a2.clone(), b2.clone()), (a.clone(), b.clone()));
        assert_eq!(a2.clone().update(1, 1, 1), a.clone().update(1, 1, 1));
        // sums beyond 64 bits survive JSON exactly
        let mut big = RollingVwapRaw::new(2);
        big.update(
            3_000_000_000_000,
            3_000_000_000_000,
            3_000_000_000_000,
            i64::MAX,
        );
        big.update(
            3_000_000_000_001,
            3_000_000_000_000,
            3_000_000_000_000,
            i64::MAX,
        );
        let big2: RollingVwapRaw =
            serde_json::from_str(&serde_json::to_string(&big).unwrap()).unwrap();
        assert!(big.fraction().unwrap().0 > i128::from(u64::MAX));
        assert_eq!(big2.fraction(), big.fraction());
        let bad = r#"{"trs":{"buf":[1,2,3],"head":3,"len":3,"sum":6},"prev_close":null}"#;
        assert!(serde_json::from_str::<AtrRaw>(bad).is_err());
        let bad = r#"{"trs":{"buf":[1,2,3],"head":0,"len":3,"sum":7},"prev_close":null}"#;
        assert!(serde_json::from_str::<AtrRaw>(bad).is_err());
    }
}
