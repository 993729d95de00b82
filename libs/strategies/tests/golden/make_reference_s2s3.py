"""Reference fills for the S2 and S3 golden tests, computed with backtrader 1.9.78.

Run from the repository root with backtrader==1.9.78.123 installed:

    python3 libs/strategies/tests/golden/make_reference_s2s3.py

Writes one CSV per variant next to this script (date,side,qty,price) and prints
the final portfolio value and fill count of each. Same convention as
make_reference.py: signal on bar t's close, all-in market order (whole shares)
filled at bar t+1's open and sized on that open (cheat-on-open), cash 100,000,
no fees, no slippage. Defaults of the registry:

- S2: BollingerBands(close, 20, devfactor 2) (population standard deviation),
  RSI(close, 14) (Wilder's smoothing, backtrader's default). Flat: long when
  close < bottom band and RSI < 30 (short, long_short: close > top band and
  RSI > 70). Long: exit when close >= middle band or RSI > 70; short: exit when
  close <= middle band or RSI < 30.
- S3: prior Donchian channels Highest(high, N)[-1], Lowest(low, N)[-1] for N = 20
  (entry) and 10 (exit), volume average SMA(volume, 20)[-1]. Flat: long when
  close > prior 20-bar high and volume > 1.2 x the prior 20-bar mean volume
  (short, long_short: close < prior 20-bar low, same volume test). Long: exit
  when close < prior 10-bar low; short: exit when close > prior 10-bar high.
"""

import csv
import datetime as dt
import os
import sys

import backtrader as bt

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "..", "data", "samples", "spy_1d_1998-2021.csv")


class Base(bt.Strategy):
    params = dict(long_short=False)

    def __init__(self):
        self.pending = 0
        self.fills = []

    def next_open(self):
        if self.pending == 1:
            self.buy(size=int(self.broker.getcash() / self.data.open[0]))
        elif self.pending == -1:
            self.sell(size=int(self.broker.getcash() / self.data.open[0]))
        elif self.pending == 2:
            self.close()
        self.pending = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            side = "buy" if order.isbuy() else "sell"
            when = bt.num2date(order.executed.dt).date().isoformat()
            self.fills.append((when, side, abs(order.executed.size), order.executed.price))


class S2(Base):
    params = dict(period=20, k=2.0, rsi_period=14, oversold=30.0, overbought=70.0)

    def __init__(self):
        super().__init__()
        self.bb = bt.ind.BollingerBands(self.data.close, period=self.p.period, devfactor=self.p.k)
        self.rsi = bt.ind.RSI(self.data.close, period=self.p.rsi_period)

    def next(self):
        c, rsi, pos = self.data.close[0], self.rsi[0], self.position.size
        if pos == 0:
            if c < self.bb.bot[0] and rsi < self.p.oversold:
                self.pending = 1
            elif self.p.long_short and c > self.bb.top[0] and rsi > self.p.overbought:
                self.pending = -1
        elif pos > 0:
            if c >= self.bb.mid[0] or rsi > self.p.overbought:
                self.pending = 2
        elif c <= self.bb.mid[0] or rsi < self.p.oversold:
            self.pending = 2


class S3(Base):
    params = dict(entry=20, exit=10, vol_window=20, vol_mult=1.2)

    def __init__(self):
        super().__init__()
        d = self.data
        self.hi = bt.ind.Highest(d.high, period=self.p.entry)
        self.lo = bt.ind.Lowest(d.low, period=self.p.entry)
        self.xhi = bt.ind.Highest(d.high, period=self.p.exit)
        self.xlo = bt.ind.Lowest(d.low, period=self.p.exit)
        self.vavg = bt.ind.SMA(d.volume, period=self.p.vol_window)

    def next(self):
        # The prior windows ([-1]) are full from the bar after the longest one.
        if len(self) <= max(self.p.entry, self.p.exit, self.p.vol_window):
            return
        d, pos = self.data, self.position.size
        c = d.close[0]
        loud = d.volume[0] > self.p.vol_mult * self.vavg[-1]
        if pos == 0:
            if loud and c > self.hi[-1]:
                self.pending = 1
            elif self.p.long_short and loud and c < self.lo[-1]:
                self.pending = -1
        elif pos > 0:
            if c < self.xlo[-1]:
                self.pending = 2
        elif c > self.xhi[-1]:
            self.pending = 2


def run(cls, long_short):
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    cerebro.broker.setcash(100000.0)
    feed = bt.feeds.GenericCSVData(
        dataname=DATA,
        dtformat="%Y-%m-%dT%H:%M:%SZ",
        datetime=0, open=1, high=2, low=3, close=4, volume=5, openinterest=-1,
        fromdate=dt.datetime(1998, 1, 1),
    )
    cerebro.adddata(feed)
    cerebro.addstrategy(cls, long_short=long_short)
    strat = cerebro.run()[0]
    return cerebro.broker.getvalue(), strat.fills


def main():
    for name, cls in [("s2", S2), ("s3", S3)]:
        for variant, long_short in [("long", False), ("long_short", True)]:
            value, fills = run(cls, long_short)
            path = os.path.join(HERE, f"{name}_{variant}_fills.csv")
            with open(path, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["date", "side", "qty", "price"])
                for when, side, qty, price in fills:
                    w.writerow([when, side, int(qty), f"{price:.4f}"])
            print(f"{name} {variant}: final value {value:.2f}, fills {len(fills)}")


if __name__ == "__main__":
    main()
