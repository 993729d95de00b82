#!/usr/bin/env python3
"""Regenerate the golden references for grodt-analytics.

Runs the reference SMA(10)/SMA(30) long-only, whole-share crossover on SPY daily
(data/samples/spy_1d_1998-2021.csv, copied from QuantConnect/Lean, Apache-2.0)
with backtrader, cross-checks it against an independent plain-Python loop,
asserts the published final value (182,091.18), and writes:

  spy_sma_equity.csv    daily equity at each close, full precision (repr),
                        and the shares held after that close
  spy_sma_trades.csv    the 101 closed round trips with MAE and MFE
  spy_sma_metrics.json  metrics of its daily simple returns computed by
                        empyrical-reloaded, quantstats, numpy and scipy

Conventions (shared/data/README.md): the signal is taken on bar t's close
(fast SMA crosses above slow: buy all in; crosses below: sell all), the order
fills at bar t+1's open and is sized on that open, whole shares, cash 100,000,
no fees, no slippage. 252 periods a year, risk-free 0.

Environment used to produce the committed files (pip):
  backtrader==1.9.78.123 empyrical-reloaded==0.7.1 quantstats==0.0.86
  numpy pandas scipy
Run from the repository root:
  python libs/analytics/tests/golden/make_reference.py
"""

import json
import math
import os
import sys

import backtrader as bt
import empyrical as ep
import numpy as np
import pandas as pd
import quantstats as qs
import scipy
import scipy.stats as st

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
DATA = os.path.join(ROOT, "data", "samples", "spy_1d_1998-2021.csv")
CASH = 100_000.0
FAST, SLOW = 10, 30
EXPECTED_FINAL = 182_091.18
EXPECTED_TRADES = 102
EXPECTED_FILLS = 203
PERIODS = 252


def load():
    df = pd.read_csv(DATA)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


class SmaCross(bt.Strategy):
    """Signal on the close in next(); order placed in next_open() of the
    following bar, sized on that bar's open (cheat-on-open fills it there)."""

    def __init__(self):
        fast = bt.ind.SMA(self.data.close, period=FAST)
        slow = bt.ind.SMA(self.data.close, period=SLOW)
        self.cross = bt.ind.CrossOver(fast, slow)
        self.pending = 0
        self.values = []
        self.held = []
        self.fills = []

    def prenext(self):
        self.values.append(self.broker.getvalue())
        self.held.append(self.position.size)

    def next(self):
        self.values.append(self.broker.getvalue())
        self.held.append(self.position.size)
        if self.cross[0] > 0 and not self.position:
            self.pending = 1
        elif self.cross[0] < 0 and self.position:
            self.pending = -1

    def next_open(self):
        if self.pending > 0:
            size = math.floor(self.broker.getcash() / self.data.open[0])
            if size > 0:
                self.buy(size=size)
        elif self.pending < 0:
            self.close()
        self.pending = 0

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append(
                (
                    bt.num2date(order.executed.dt).date().isoformat(),
                    "buy" if order.isbuy() else "sell",
                    abs(order.executed.size),
                    order.executed.price,
                )
            )


def run_backtrader(df):
    cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
    feed = bt.feeds.PandasData(
        dataname=df.set_index(df["timestamp"].dt.tz_localize(None)),
        open="open",
        high="high",
        low="low",
        close="close",
        volume="volume",
        openinterest=None,
    )
    cerebro.adddata(feed)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=0.0)
    cerebro.addstrategy(SmaCross)
    strat = cerebro.run()[0]
    return np.array(strat.values, dtype=float), np.array(strat.held), strat.fills


def run_plain(df):
    """Independent re-implementation: same SMA (fsum) and the same crossover
    rule as backtrader's CrossOver (sign change of the last non-zero
    difference)."""
    close = df["close"].to_numpy(dtype=float)
    open_ = df["open"].to_numpy(dtype=float)
    n = len(close)
    cash, shares, pending = CASH, 0, 0
    prev_nz = 0.0
    values, fills = [], []
    for t in range(n):
        if pending > 0:
            size = math.floor(cash / open_[t])
            if size > 0:
                cash -= size * open_[t]
                shares += size
                fills.append((t, "buy", size, open_[t]))
        elif pending < 0:
            cash += shares * open_[t]
            fills.append((t, "sell", shares, open_[t]))
            shares = 0
        pending = 0
        values.append(cash + shares * close[t])
        if t >= SLOW - 1:
            fast = math.fsum(close[t - FAST + 1 : t + 1]) / FAST
            slow = math.fsum(close[t - SLOW + 1 : t + 1]) / SLOW
            diff = fast - slow
            up = prev_nz < 0 and diff > 0
            down = prev_nz > 0 and diff < 0
            if diff != 0:
                prev_nz = diff
            if up and shares == 0:
                pending = 1
            elif down and shares > 0:
                pending = -1
    return np.array(values), fills


def closed_trades(df, fills):
    """Pairs buy/sell fills into round trips. MAE/MFE are the worst and best
    unrealised PnL while open: the entry bar's whole range counts (the fill
    is at its open, the first price of the bar), later bars' lows and highs
    count, and the exit bar only through its open, where the exit fills."""
    low = df["low"].to_numpy(dtype=float)
    high = df["high"].to_numpy(dtype=float)
    stamps = df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_list()
    out = []
    for (ti, si, qi, pi), (to, so, qo, po) in zip(fills[0::2], fills[1::2]):
        assert si == "buy" and so == "sell" and qi == qo
        lo = min(low[ti:to].min(), po)
        hi = max(high[ti:to].max(), po)
        out.append(
            (
                stamps[ti],
                stamps[to],
                "long",
                float(qi),
                float(pi),
                float(po),
                float(qi * (po - pi)),
                0.0,
                float(min(qi * (lo - pi), 0.0)),
                float(max(qi * (hi - pi), 0.0)),
            )
        )
    return out


def trade_metrics(trades):
    pnl = np.array([t[6] for t in trades])
    mae = np.array([t[8] for t in trades])
    mfe = np.array([t[9] for t in trades])
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    return {
        "count": int(len(pnl)),
        "wins": int(len(wins)),
        "losses": int(len(losses)),
        "win_rate": float(len(wins) / len(pnl)),
        "gross_profit": float(wins.sum()),
        "gross_loss": float(losses.sum()),
        "net_pnl": float(pnl.sum()),
        "profit_factor": float(wins.sum() / -losses.sum()),
        "avg_win": float(wins.mean()),
        "avg_loss": float(losses.mean()),
        "expectancy": float(pnl.mean()),
        "mae_mean": float(mae.mean()),
        "mae_median": float(np.median(mae)),
        "mae_min": float(mae.min()),
        "mfe_mean": float(mfe.mean()),
        "mfe_median": float(np.median(mfe)),
        "mfe_max": float(mfe.max()),
    }


def main():
    df = load()
    bt_values, bt_positions, bt_fills = run_backtrader(df)
    plain_values, plain_fills = run_plain(df)
    assert len(bt_values) == len(df), (len(bt_values), len(df))
    assert np.array_equal(bt_values, plain_values) or np.allclose(
        bt_values, plain_values, rtol=0, atol=1e-6
    ), "backtrader and the plain loop disagree"
    assert len(bt_fills) == EXPECTED_FILLS, len(bt_fills)
    assert len(plain_fills) == EXPECTED_FILLS, len(plain_fills)
    first = [(d, side, size, round(px, 6)) for d, side, size, px in bt_fills[:4]]
    assert first == [
        ("1998-05-14", "buy", 896, 111.53),
        ("1998-05-18", "sell", 896, 110.72),
        ("1998-05-22", "buy", 888, 111.75),
        ("1998-05-28", "sell", 888, 109.88),
    ], first
    assert (EXPECTED_FILLS + 1) // 2 == EXPECTED_TRADES
    days = df["timestamp"].dt.date.map(lambda d: d.isoformat()).to_list()
    plain_as_bt = [(days[t], side, size, round(px, 6)) for t, side, size, px in plain_fills]
    assert plain_as_bt == [(d, side, size, round(px, 6)) for d, side, size, px in bt_fills]
    final = float(bt_values[-1])
    assert round(final, 2) == EXPECTED_FINAL, final

    equity = pd.Series(bt_values, index=df["timestamp"])
    with open(os.path.join(HERE, "spy_sma_equity.csv"), "w", newline="\n") as f:
        f.write("timestamp,equity,position\n")
        for (ts, v), pos in zip(equity.items(), bt_positions):
            f.write(f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{float(v)!r},{int(pos)}\n")

    trades = closed_trades(df, plain_fills)
    assert len(trades) == EXPECTED_TRADES - 1
    with open(os.path.join(HERE, "spy_sma_trades.csv"), "w", newline="\n") as f:
        f.write("entry_ts,exit_ts,side,qty,entry_price,exit_price,pnl,fees,mae,mfe\n")
        for t in trades:
            f.write(",".join(repr(x) if isinstance(x, float) else str(x) for x in t) + "\n")

    r = equity.pct_change().iloc[1:]
    ra = r.to_numpy()
    assert len(ra) == 5848
    mu, sd = float(np.mean(ra)), float(np.std(ra, ddof=1))

    def hist_var(c):
        return float(np.percentile(ra, 100 * c))

    def hist_cvar(c):
        v = hist_var(c)
        return float(np.mean(ra[ra <= v]))

    def normal_var(c):
        return float(mu + st.norm.ppf(c) * sd)

    def normal_cvar(c):
        return float(mu - sd * st.norm.pdf(st.norm.ppf(c)) / c)

    metrics = {
        "periods": int(len(ra)),
        "final_equity": final,
        "total_return": float(ep.cum_returns_final(r)),
        "cagr": float(ep.annual_return(r, period="daily")),
        "annual_volatility": float(ep.annual_volatility(r, period="daily")),
        "sharpe": float(ep.sharpe_ratio(r, risk_free=0.0, period="daily")),
        "sortino": float(ep.sortino_ratio(r, required_return=0.0, period="daily")),
        "calmar": float(ep.calmar_ratio(r, period="daily")),
        "max_drawdown": float(ep.max_drawdown(r)),
        "var_95_historical": float(ep.value_at_risk(r, cutoff=0.05)),
        "var_99_historical": float(ep.value_at_risk(r, cutoff=0.01)),
        "cvar_95_historical": hist_cvar(0.05),
        "cvar_99_historical": hist_cvar(0.01),
        "var_95_normal": float(qs.stats.value_at_risk(r, sigma=1, confidence=0.95)),
        "var_99_normal": float(qs.stats.value_at_risk(r, sigma=1, confidence=0.99)),
        "cvar_95_normal": normal_cvar(0.05),
        "cvar_99_normal": normal_cvar(0.01),
        "mean_return": mu,
        "exposure": float(np.mean(bt_positions[:-1] != 0)),
        "turnover": float(
            sum(t[3] * (t[4] + t[5]) for t in trades)
            / np.mean(bt_values[:-1])
            * PERIODS
            / len(ra)
        ),
        "trades": trade_metrics(trades),
        "std_return": sd,
        "versions": {
            "backtrader": bt.__version__,
            "empyrical": ep.__version__,
            "quantstats": qs.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": scipy.__version__,
            "python": sys.version.split()[0],
        },
    }

    # Cross-checks between the libraries, so a silent change of definition in
    # one of them shows up here rather than as a puzzling Rust failure.
    def close(a, b, rel=1e-12):
        return abs(a - b) <= rel * max(abs(a), abs(b))

    assert close(metrics["var_95_historical"], hist_var(0.05))
    assert close(metrics["var_99_historical"], hist_var(0.01))
    assert close(metrics["var_95_normal"], normal_var(0.05))
    assert close(metrics["var_99_normal"], normal_var(0.01))
    assert close(metrics["cvar_95_historical"], float(ep.conditional_value_at_risk(r, 0.05)))
    assert close(metrics["cvar_99_historical"], float(ep.conditional_value_at_risk(r, 0.01)))
    assert close(metrics["sharpe"], float(qs.stats.sharpe(r, rf=0.0, periods=PERIODS)))
    assert close(metrics["sharpe"], math.sqrt(PERIODS) * mu / sd)
    assert close(metrics["max_drawdown"], float(qs.stats.max_drawdown(r)))
    assert close(metrics["calmar"], metrics["cagr"] / abs(metrics["max_drawdown"]))

    readme = {
        "sharpe": 0.284920,
        "sortino": 0.388117,
        "calmar": 0.085662,
        "max_drawdown": -0.305420,
        "cagr": 0.026163,
        "var_95_historical": -0.011647,
        "var_95_normal": -0.011602,
        "cvar_95_historical": -0.019175,
        "cvar_95_normal": -0.014582,
    }
    for k, v in readme.items():
        assert round(metrics[k], 6) == v, (k, metrics[k], v)

    with open(os.path.join(HERE, "spy_sma_metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
