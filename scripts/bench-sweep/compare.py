"""Compares GRODT's and vectorbt's final values of the sweep grid
(`scripts/bench sweep`) and explains every set that differs by a cent or more.

For a differing set it replays both crossover decisions bar by bar: GRODT's is
exact (integer window sums, `sum_fast * slow` against `sum_slow * fast`, a cross
is a sign change of the last non-zero difference, as backtrader's CrossOver),
vectorbt's is its own `ma_crossed_above` / `ma_crossed_below` on its float rolling
means. The first bar where the two decide differently is classified:
- "float": the float means order the two averages differently from the exact sums
  (a near tie rounded the other way);
- "tie": the exact sums are equal on this or the previous bar, and vectorbt's
  `<=` / `>=` counts the tie as a side where backtrader keeps the last non-zero sign;
- "granularity": the decisions agree on every bar and vectorbt's fills part
  from an exact replay of the rules (Fractions) by its float
  `size_granularity`: a fill one 1e-8 step smaller, after which a sell leaves a
  1e-8 position and its long-only entries stop; GRODT's value is checked
  against the exact replay for every such set;
- "none": the decisions agree and the sizing does not explain it.

Usage: compare.py CSV GRODT_OUT ENGINE=VBT_OUT [ENGINE=VBT_OUT ...]
(ENGINE numba or rust, the vectorbt engine of that output; one JSON line each)
"""

import json
import sys
from fractions import Fraction

import numpy as np
import pandas as pd


def exact_signals(ps, f, s, n):
    """GRODT's cross decisions: +1 up, -1 down, 0 none, per bar."""
    out = np.zeros(n, np.int8)
    t = np.arange(s - 1, n)
    hi = ps[t + 1]
    d = (hi - ps[t + 1 - f]) * s - (hi - ps[t + 1 - s]) * f
    last = None
    sd_all = np.sign(d).astype(np.int8)
    for k, sd in zip(t, sd_all):
        prev = last
        if sd != 0 or prev is None:
            last = sd
        if sd != 0 and prev is not None and sd == -prev:
            out[k] = sd
    return out, d


def vbt_signals(close, f, s):
    import vectorbt as vbt

    # vectorbt's own rolling means (its engines differ in the last bits) and
    # its own crossing rule, exactly as vbt_sweep.py calls them
    # (`ma_crossed_above` needs the fast mean strictly below since the last
    # cross, an equal bar after a cross resets it).
    fast = vbt.MA.run(close, [f], short_name="fast")
    slow = vbt.MA.run(close, [s], short_name="slow")
    up = fast.ma_crossed_above(slow).to_numpy().ravel()
    dn = fast.ma_crossed_below(slow).to_numpy().ravel()
    mf = fast.ma.to_numpy().ravel()
    ms = slow.ma.to_numpy().ravel()
    return up.astype(np.int8) - dn.astype(np.int8), mf, ms


def exact_replay(ex, open_raw, close_raw):
    """The rules GRODT's engine applies, in exact fractions: a cross decided at
    bar t's close fills at t+1's open, long only, all cash floored to 1e-8 BTC;
    the final value at the last close, and the fills (bar, side, size)."""
    cash, pos, fills = Fraction(100_000), Fraction(0), []
    for t in np.nonzero(ex)[0]:
        if t + 1 >= len(open_raw):
            break
        p = Fraction(int(open_raw[t + 1]), 100)
        if ex[t] > 0 and pos == 0:
            q = Fraction(int(cash / p * 10**8), 10**8)
            if q > 0:
                cash, pos = cash - q * p, q
                fills.append((int(t + 1), 0, q))
        elif ex[t] < 0 and pos > 0:
            fills.append((int(t + 1), 1, pos))
            cash, pos = cash + pos * p, Fraction(0)
    return float(cash + pos * Fraction(int(close_raw[-1]), 100)), fills


def vbt_fills(close, open_, up, dn):
    """vectorbt's fills for one set, as vbt_sweep.py simulates it."""
    import vectorbt as vbt

    en = np.concatenate([[False], up[:-1]]).reshape(-1, 1)
    ex = np.concatenate([[False], dn[:-1]]).reshape(-1, 1)
    pf = vbt.Portfolio.from_signals(
        close[:, None], en, ex, price=open_[:, None], size=np.inf, size_granularity=1e-8,
        init_cash=100_000.0, fees=0.0, direction="longonly", freq="1min",
    )
    r = pf.orders.values
    return [(int(i), int(sd), float(q)) for i, sd, q in zip(r["idx"], r["side"], r["size"])]


def granularity(exact_fills, vfills):
    """Whether vectorbt's orders part from the exact ones by its float size
    granularity: the first differing fill is at the same bar and side, one
    1e-8 step smaller (its float floor of size / 1e-8), after which a sell can
    leave a 1e-8 position its long-only entries never get past."""
    for (ti, si, qi), (tv, sv, qv) in zip(exact_fills, vfills):
        if (ti, si) != (tv, sv):
            return False
        step = round((float(qi) - qv) * 1e8)
        if step != 0:
            return step == 1
    return len(vfills) < len(exact_fills)


def explain(close, ps, f, s):
    n = len(close)
    ex, d = exact_signals(ps, f, s, n)
    vb, mf, ms = vbt_signals(close, f, s)
    # Only decisions that can change a long-only position matter; compare the
    # raw cross decisions up to the first divergence.
    diff = np.nonzero(ex != vb)[0]
    if len(diff) == 0:
        return "none", None, ex, vb
    t = int(diff[0])
    k = t - (s - 1)
    exact_sign = int(np.sign(d[k])) if k >= 0 else 0
    float_sign = int(np.sign(mf[t] - ms[t]))
    if exact_sign != 0 and float_sign != exact_sign:
        return "float", t, ex, vb
    prev_tie = k >= 1 and d[k - 1] == 0
    if exact_sign == 0 or prev_tie:
        return "tie", t, ex, vb
    prev_float = int(np.sign(mf[t - 1] - ms[t - 1]))
    prev_exact = int(np.sign(d[k - 1])) if k >= 1 else 0
    if prev_exact != 0 and prev_float != prev_exact:
        return "float", t, ex, vb
    return "other", t, ex, vb


def main():
    csv, grodt_out, vbt_outs = sys.argv[1], sys.argv[2], sys.argv[3:]
    df = pd.read_csv(csv)
    close = df["close"].to_numpy(float)
    open_ = df["open"].to_numpy(float)
    raw = np.round(close * 100).astype(np.int64)
    open_raw = np.round(open_ * 100).astype(np.int64)
    ps = np.concatenate([[0], np.cumsum(raw)])
    g = pd.read_csv(grodt_out)
    import vectorbt as vbt

    for arg in vbt_outs:
        engine, vo = arg.split("=", 1)
        vbt.settings["engine"] = engine
        v = pd.read_csv(vo)
        m = g.merge(v, on=["fast", "slow"], suffixes=("_grodt", "_vbt"))
        delta = (m["final_value_grodt"] - m["final_value_vbt"]).abs()
        cent = delta < 0.005
        reasons = {}
        unexplained = []
        # Where the decisions agree, GRODT's value is held to an exact
        # replay of the rules, and vectorbt's fills to the exact ones.
        replayed, replay_max_diff = 0, 0.0
        for _, row in m[~cent].iterrows():
            f, s = int(row["fast"]), int(row["slow"])
            why, t, ex, vb = explain(close, ps, f, s)
            if why == "none":
                value, fills = exact_replay(ex, open_raw, raw)
                replayed += 1
                replay_max_diff = max(replay_max_diff, abs(value - row["final_value_grodt"]))
                if granularity(fills, vbt_fills(close, open_, vb > 0, vb < 0)):
                    why = "granularity"
            reasons[why] = reasons.get(why, 0) + 1
            if why in ("none", "other") and len(unexplained) < 10:
                unexplained.append([f, s, t, float(row["final_value_grodt"] - row["final_value_vbt"])])
        print(
            json.dumps(
                {
                    "vectorbt_engine": engine,
                    "vectorbt_out": vo,
                    "sets": int(len(m)),
                    "agree_to_the_cent": int(cent.sum()),
                    "max_abs_diff_of_agreeing": float(delta[cent].max()) if cent.any() else None,
                    "differ": int((~cent).sum()),
                    "first_divergence": reasons,
                    "grodt_against_exact_replay": {
                        "sets": replayed,
                        "max_abs_diff": replay_max_diff,
                    },
                    "unexplained": unexplained,
                }
            )
        )


if __name__ == "__main__":
    main()
