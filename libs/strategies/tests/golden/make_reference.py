"""Reference fills for the SMA(10/30) golden tests, computed with backtrader 1.9.78.

Run from the repository root with backtrader==1.9.78.123 installed:

    python3 libs/strategies/tests/golden/make_reference.py

Writes one CSV per variant next to this script (date,side,qty,price) and prints
the final portfolio value of each. Convention (see /work/shared/data/README.md):
signal on bar t's close, all-in market order filled at bar t+1's open and sized
on that open (cheat-on-open), long only, cash 100,000, no fees, no slippage.
The `close` variant (fractional) fills on the signal bar's close (cheat-on-close), the
lookahead-prone convention kept only as a cross-check.
"""

import csv
import datetime as dt
import os
import sys

import backtrader as bt

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "..", "data", "samples", "spy_1d_1998-2021.csv")


class SmaCross(bt.Strategy):
    params = dict(fast=10, slow=30, fractional=False, on_close=False)

    def __init__(self):
        fast = bt.ind.SMA(self.data.close, period=self.p.fast)
        slow = bt.ind.SMA(self.data.close, period=self.p.slow)
        self.cross = bt.ind.CrossOver(fast, slow)
        self.pending = 0
        self.fills = []

    def _size(self, price):
        cash = self.broker.getcash()
        # A float all-in size can cost one ulp more than the cash and be rejected
        # for margin; shaving 1e-12 keeps every order (value change < 1e-6).
        return cash / price * (1 - 1e-12) if self.p.fractional else int(cash / price)

    def next(self):
        signal = 0
        if self.cross[0] > 0 and not self.position:
            signal = 1
        elif self.cross[0] < 0 and self.position:
            signal = -1
        if self.p.on_close:
            if signal > 0:
                self.buy(size=self._size(self.data.close[0]))
            elif signal < 0:
                self.close()
        else:
            self.pending = signal

    def next_open(self):
        if self.p.on_close:
            return
        if self.pending > 0:
            self.buy(size=self._size(self.data.open[0]))
        elif self.pending < 0:
            self.close()
        self.pending = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            side = "buy" if order.isbuy() else "sell"
            when = bt.num2date(order.executed.dt).date().isoformat()
            self.fills.append((when, side, abs(order.executed.size), order.executed.price))


def run(fractional, on_close):
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=not on_close)
    cerebro.broker.setcash(100000.0)
    if on_close:
        cerebro.broker.set_coc(True)
    feed = bt.feeds.GenericCSVData(
        dataname=DATA,
        dtformat="%Y-%m-%dT%H:%M:%SZ",
        datetime=0, open=1, high=2, low=3, close=4, volume=5, openinterest=-1,
        fromdate=dt.datetime(1998, 1, 1),
    )
    cerebro.adddata(feed)
    cerebro.addstrategy(SmaCross, fractional=fractional, on_close=on_close)
    strat = cerebro.run()[0]
    return cerebro.broker.getvalue(), strat.fills


def main():
    variants = [("whole", False, False), ("fractional", True, False), ("close", True, True)]
    for name, fractional, on_close in variants:
        value, fills = run(fractional, on_close)
        path = os.path.join(HERE, f"sma_10_30_{name}_fills.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["date", "side", "qty", "price"])
            for when, side, qty, price in fills:
                w.writerow([when, side, repr(float(qty)) if fractional else int(qty), f"{price:.4f}"])
        print(f"{name}: final value {value:.2f}, fills {len(fills)}", file=sys.stdout)


if __name__ == "__main__":
    main()
