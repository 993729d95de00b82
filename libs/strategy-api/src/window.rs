//! Bounded windows of recent bars, for drivers that receive bars one at a time.

use grodt_core::Bar;

use crate::context::MarketView;

/// The last `capacity` bars of one instrument, readable as one contiguous slice.
///
/// Stored in a buffer of twice the capacity: a push is O(1) amortised (the
/// newest `capacity` bars are moved to the front once per `capacity` pushes),
/// and memory stays bounded however long the feed runs.
#[derive(Clone, Debug)]
pub struct BarWindow {
    capacity: usize,
    buf: Vec<Bar>,
}

impl BarWindow {
    /// An empty window keeping `capacity` bars (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            buf: Vec::with_capacity(2 * capacity),
        }
    }

    /// Bars kept at most.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends a bar. A bar not after the latest one (a redelivery or a stale
    /// bar) is ignored and `false` returned, so feeding the same bar twice is harmless.
    pub fn push(&mut self, bar: Bar) -> bool {
        if self.buf.last().is_some_and(|b| bar.ts <= b.ts) {
            return false;
        }
        if self.buf.len() == 2 * self.capacity {
            self.buf.copy_within(self.capacity.., 0);
            self.buf.truncate(self.capacity);
        }
        self.buf.push(bar);
        true
    }

    /// The kept bars, oldest first.
    pub fn bars(&self) -> &[Bar] {
        &self.buf[self.buf.len().saturating_sub(self.capacity)..]
    }

    /// The latest bar.
    pub fn last(&self) -> Option<&Bar> {
        self.buf.last()
    }
}

/// One [`BarWindow`] per instrument: the [`MarketView`] of a live driver.
#[derive(Clone, Debug)]
pub struct Windows {
    windows: Vec<BarWindow>,
}

impl Windows {
    /// `instruments` empty windows of `capacity` bars each.
    pub fn new(instruments: usize, capacity: usize) -> Self {
        Self {
            windows: vec![BarWindow::new(capacity); instruments],
        }
    }

    /// Appends a bar of `instrument`; `false` if it was not after the latest
    /// one (ignored) or the instrument does not exist.
    pub fn push(&mut self, instrument: usize, bar: Bar) -> bool {
        self.windows
            .get_mut(instrument)
            .is_some_and(|w| w.push(bar))
    }

    /// The latest bar of `instrument`.
    pub fn last(&self, instrument: usize) -> Option<&Bar> {
        self.windows.get(instrument).and_then(BarWindow::last)
    }
}

impl MarketView for Windows {
    fn history(&self, instrument: usize) -> &[Bar] {
        self.windows.get(instrument).map_or(&[], BarWindow::bars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64) -> Bar {
        Bar {
            ts,
            open: ts,
            high: ts,
            low: ts,
            close: ts,
            volume: 1,
        }
    }

    #[test]
    fn keeps_the_last_capacity_bars_in_order() {
        let mut w = BarWindow::new(3);
        assert!(w.bars().is_empty());
        for ts in 1..=10 {
            assert!(w.push(bar(ts)));
            let got: Vec<i64> = w.bars().iter().map(|b| b.ts).collect();
            let want: Vec<i64> = ((ts - 2).max(1)..=ts).collect();
            assert_eq!(got, want, "after bar {ts}");
            assert!(w.buf.capacity() <= 6, "memory stays bounded");
        }
    }

    #[test]
    fn redelivered_and_stale_bars_are_ignored() {
        let mut w = BarWindow::new(2);
        assert!(w.push(bar(5)));
        assert!(!w.push(bar(5)), "same bar again");
        assert!(!w.push(bar(4)), "older bar");
        assert_eq!(w.bars().len(), 1);
    }

    #[test]
    fn windows_view_per_instrument() {
        let mut ws = Windows::new(2, 4);
        assert!(ws.push(1, bar(1)));
        assert!(!ws.push(2, bar(1)), "no such instrument");
        assert!(ws.history(0).is_empty());
        assert_eq!(ws.history(1).len(), 1);
        assert!(ws.history(7).is_empty());
    }
}
