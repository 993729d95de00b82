//! Streaming technical indicators (SMA, EMA, ATR, rolling VWAP, RSI) over f64, O(1) per
//! update and no allocation after construction, and exact integer variants over raw
//! fixed-point values (`SmaRaw`, `AtrRaw`, `RollingVwapRaw`, `BollingerRaw`, and the
//! Donchian channel's `HighestRaw` / `LowestRaw`).
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

/// Bollinger bands over raw fixed-point integers: the exact `i128` window sums of
/// `x` and `x^2` over the last `period` values. The middle band is the mean
/// `sum / n`; the standard deviation is the population one (divisor `n`, as
/// backtrader's `StdDev` and TA-Lib), `sd = sqrt(n * sumsq - sum^2) / n`; the bands
/// are `mean +- k * sd`. Comparisons of a price with the bands are made on the exact
/// integers (`n * x` against `sum`) up to one f64 square root.
#[derive(Clone, Debug)]
pub struct BollingerRaw {
    buf: Vec<i64>,
    head: usize,
    len: usize,
    sum: i128,
    sumsq: i128,
}

/// Where a value lies relative to Bollinger bands, as exact integers: with
/// `dev = n * x - sum` (`n` times the distance from the mean) and
/// `var_n2 = n * sumsq - sum^2` (`n^2` times the variance), `x` is below the lower
/// band when `dev < -k * sqrt(var_n2)` and above the upper band when `dev > k * sqrt(var_n2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BandPosition {
    /// `n * x - sum`: the sign says which side of the middle band `x` is on.
    pub dev: i128,
    /// `n * sumsq - sum^2 >= 0`: `n^2` times the population variance.
    pub var_n2: i128,
}

impl BandPosition {
    /// Whether `x` is strictly below the lower band `mean - k * sd`.
    #[allow(
        clippy::cast_precision_loss,
        reason = "one square root of an exact integer"
    )]
    pub fn below_lower(&self, k: f64) -> bool {
        (self.dev as f64) < -k * (self.var_n2 as f64).sqrt()
    }

    /// Whether `x` is strictly above the upper band `mean + k * sd`.
    #[allow(
        clippy::cast_precision_loss,
        reason = "one square root of an exact integer"
    )]
    pub fn above_upper(&self, k: f64) -> bool {
        (self.dev as f64) > k * (self.var_n2 as f64).sqrt()
    }
}

impl BollingerRaw {
    /// New bands over `period` values; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self {
            buf: vec![0; period.max(1)],
            head: 0,
            len: 0,
            sum: 0,
            sumsq: 0,
        }
    }

    /// Adds a raw value; returns whether the window is full.
    pub fn update(&mut self, x: i64) -> bool {
        let cap = self.buf.len();
        if self.len == cap {
            let old = i128::from(self.buf[self.head]);
            self.sum -= old;
            self.sumsq -= old * old;
        } else {
            self.len += 1;
        }
        self.buf[self.head] = x;
        self.head += 1;
        if self.head == cap {
            self.head = 0;
        }
        let x = i128::from(x);
        self.sum += x;
        self.sumsq += x * x;
        self.ready()
    }

    /// Whether `period` values were seen.
    pub fn ready(&self) -> bool {
        self.len == self.buf.len()
    }

    /// The period.
    pub fn period(&self) -> usize {
        self.buf.len()
    }

    /// Where `x` (raw) lies relative to the current bands, if warmed up.
    pub fn position(&self, x: i64) -> Option<BandPosition> {
        if !self.ready() {
            return None;
        }
        let n = i128::try_from(self.buf.len()).unwrap_or(i128::MAX);
        Some(BandPosition {
            dev: n * i128::from(x) - self.sum,
            var_n2: (n * self.sumsq - self.sum * self.sum).max(0),
        })
    }

    /// `(lower, middle, upper)` in raw units for `k` standard deviations, if warmed up.
    #[allow(clippy::cast_precision_loss, reason = "an f64 view of exact sums")]
    pub fn bands(&self, k: f64) -> Option<(f64, f64, f64)> {
        let p = self.position(0)?;
        let n = self.buf.len() as f64;
        let mid = self.sum as f64 / n;
        let sd = (p.var_n2 as f64).sqrt() / n;
        Some((mid - k * sd, mid, mid + k * sd))
    }
}

/// Relative strength index with Wilder's smoothing (alpha `1 / period`), the
/// backtrader/TA-Lib definition: up and down moves `max(x_t - x_{t-1}, 0)` and
/// `max(x_{t-1} - x_t, 0)`, each averaged by Wilder's smoothing seeded with the simple
/// mean of the first `period` moves; `RSI = 100 - 100 / (1 + up / down)` (100 when
/// `down` is 0 and `up` is not, 50 when both are). The first value comes with the
/// `period + 1`-th input.
#[derive(Clone, Debug)]
pub struct Rsi {
    period: f64,
    prev: Option<f64>,
    up_seed: Sma,
    down_seed: Sma,
    avg: Option<(f64, f64)>,
}

impl Rsi {
    /// A new RSI; `period` of 0 is treated as 1.
    #[allow(clippy::cast_precision_loss, reason = "periods are small")]
    pub fn new(period: usize) -> Self {
        let p = period.max(1);
        Self {
            period: p as f64,
            prev: None,
            up_seed: Sma::new(p),
            down_seed: Sma::new(p),
            avg: None,
        }
    }

    /// Adds a value; returns the RSI once warmed up.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = self.prev.replace(x)?;
        let (up, down) = ((x - prev).max(0.0), (prev - x).max(0.0));
        self.avg = match self.avg {
            Some((u, d)) => Some((u + (up - u) / self.period, d + (down - d) / self.period)),
            None => match (self.up_seed.update(up), self.down_seed.update(down)) {
                (Some(u), Some(d)) => Some((u, d)),
                _ => None,
            },
        };
        self.value()
    }

    /// Current value, if warmed up.
    pub fn value(&self) -> Option<f64> {
        let (u, d) = self.avg?;
        Some(if d == 0.0 {
            if u == 0.0 { 50.0 } else { 100.0 }
        } else {
            100.0 - 100.0 / (1.0 + u / d)
        })
    }
}

/// The extreme of the last `period` raw values, by a monotonic queue (amortized
/// O(1) per update, at most `period` entries).
#[derive(Clone, Debug)]
struct RollingExtreme {
    period: u64,
    seen: u64,
    /// (index, value); values strictly decreasing (for a max) from the front.
    queue: std::collections::VecDeque<(u64, i64)>,
    max: bool,
}

impl RollingExtreme {
    fn new(period: usize, max: bool) -> Self {
        let p = period.max(1);
        Self {
            period: u64::try_from(p).unwrap_or(u64::MAX),
            seen: 0,
            queue: std::collections::VecDeque::with_capacity(p),
            max,
        }
    }

    fn update(&mut self, x: i64) -> Option<i64> {
        let max = self.max;
        while let Some(&(_, back)) = self.queue.back() {
            if (max && back <= x) || (!max && back >= x) {
                self.queue.pop_back();
            } else {
                break;
            }
        }
        self.queue.push_back((self.seen, x));
        self.seen += 1;
        while let Some(&(i, _)) = self.queue.front() {
            if i + self.period < self.seen {
                self.queue.pop_front();
            } else {
                break;
            }
        }
        self.value()
    }

    fn value(&self) -> Option<i64> {
        if self.seen < self.period {
            return None;
        }
        self.queue.front().map(|&(_, v)| v)
    }
}

/// The highest of the last `period` raw values (the Donchian channel's upper line
/// when fed highs), exact; `None` until `period` values were seen.
#[derive(Clone, Debug)]
pub struct HighestRaw(RollingExtreme);

impl HighestRaw {
    /// A new rolling maximum; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self(RollingExtreme::new(period, true))
    }

    /// Adds a value; returns the maximum of the last `period` once warmed up.
    pub fn update(&mut self, x: i64) -> Option<i64> {
        self.0.update(x)
    }

    /// Current value, if warmed up.
    pub fn value(&self) -> Option<i64> {
        self.0.value()
    }
}

/// The lowest of the last `period` raw values (the Donchian channel's lower line
/// when fed lows), exact; `None` until `period` values were seen.
#[derive(Clone, Debug)]
pub struct LowestRaw(RollingExtreme);

impl LowestRaw {
    /// A new rolling minimum; `period` of 0 is treated as 1.
    pub fn new(period: usize) -> Self {
        Self(RollingExtreme::new(period, false))
    }

    /// Adds a value; returns the minimum of the last `period` once warmed up.
    pub fn update(&mut self, x: i64) -> Option<i64> {
        self.0.update(x)
    }

    /// Current value, if warmed up.
    pub fn value(&self) -> Option<i64> {
        self.0.value()
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

    #[test]
    fn bollinger_bands_are_population_and_exact() {
        let xs = [2_i64, 4, 4, 4, 5, 5, 7, 9];
        let mut b = BollingerRaw::new(8);
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(b.update(x), i == 7);
        }
        // mean 5, population sd 2
        assert_eq!(b.bands(2.0), Some((1.0, 5.0, 9.0)));
        let p = b.position(1).unwrap();
        assert_eq!((p.dev, p.var_n2), (8 - 40, 8 * 232 - 1600));
        // exactly on the lower band is not below it
        assert!(!p.below_lower(2.0));
        assert!(p.below_lower(1.99));
        assert!(b.position(10).unwrap().above_upper(2.0));
        assert!(!b.position(9).unwrap().above_upper(2.0));
        // rolling: drop the 2, add a 5 -> naive recomputation agrees
        b.update(5);
        let w = [4_i64, 4, 4, 5, 5, 7, 9, 5];
        let mean = w.iter().sum::<i64>() as f64 / 8.0;
        let var = w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 8.0;
        let (lo, mid, hi) = b.bands(1.5).unwrap();
        assert!(close(mid, mean) && close(hi - mid, 1.5 * var.sqrt()) && close(mid - lo, hi - mid));
        assert_eq!(BollingerRaw::new(3).position(1), None);
    }

    #[test]
    fn rsi_is_wilder_smoothed() {
        let mut r = Rsi::new(2);
        assert_eq!(r.update(10.0), None);
        assert_eq!(r.update(11.0), None);
        // moves +1, -1: up 0.5, down 0.5 -> 50
        assert_eq!(r.update(10.0), Some(50.0));
        // +2: up = 0.5 + (2 - 0.5) / 2 = 1.25, down = 0.25 -> rs 5 -> 100 - 100/6
        let v = r.update(12.0).unwrap();
        assert!(close(v, 100.0 - 100.0 / 6.0), "{v}");
        let mut flat = Rsi::new(2);
        for _ in 0..4 {
            flat.update(5.0);
        }
        assert_eq!(flat.value(), Some(50.0));
        let mut up = Rsi::new(2);
        for x in [1.0, 2.0, 3.0] {
            up.update(x);
        }
        assert_eq!(up.value(), Some(100.0));
    }

    #[test]
    fn donchian_lines_match_a_naive_scan() {
        let xs: Vec<i64> = (0..300_i64)
            .map(|i| (i * 7919 % 101) - 50 + i / 10)
            .collect();
        for period in [1_usize, 2, 5, 20] {
            let (mut hi, mut lo) = (HighestRaw::new(period), LowestRaw::new(period));
            for (i, &x) in xs.iter().enumerate() {
                let (h, l) = (hi.update(x), lo.update(x));
                if i + 1 < period {
                    assert_eq!((h, l), (None, None));
                } else {
                    let w = &xs[i + 1 - period..=i];
                    assert_eq!(h, w.iter().max().copied(), "{period} {i}");
                    assert_eq!(l, w.iter().min().copied(), "{period} {i}");
                }
            }
            assert_eq!(hi.value(), xs[xs.len() - period..].iter().max().copied());
        }
    }
}
