"""Compares GRODT's and vectorbt's final values of the sweep grid
(`scripts/bench sweep`) and explains every set that differs by a cent or more.

For a differing set it replays both crossover decisions bar by bar: GRODT's is
exact (integer window sums, `sum_fast * slow` against `sum_slow * fast`, a cross
is a sign change of the last non-zero difference, as backtrader's CrossOver),
vectorbt's compares float rolling means (`fast > slow` now and `fast <= slow` on
the previous bar). The first bar where the two decide differently is classified:
- "float": the float means order the two averages differently from the exact sums
  (a near tie rounded the other way);
- "tie": the exact sums are equal on this or the previous bar, and vectorbt's
  `<=` / `>=` counts the tie as a side where backtrader keeps the last non-zero sign;
- "none": the decisions agree on every bar (the difference is elsewhere: sizing).

Usage: compare.py CSV GRODT_OUT ENGINE=VBT_OUT [ENGINE=VBT_OUT ...]
(ENGINE numba or rust, the vectorbt engine of that output; one JSON line each)
"""

import json
import sys

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

    # vectorbt's own rolling means (its engines differ in the last bits).
    mf = vbt.MA.run(close, [f]).ma.to_numpy().ravel()
    ms = vbt.MA.run(close, [s]).ma.to_numpy().ravel()
    up = (mf > ms) & np.concatenate([[False], mf[:-1] <= ms[:-1]])
    dn = (mf < ms) & np.concatenate([[False], mf[:-1] >= ms[:-1]])
    return up.astype(np.int8) - dn.astype(np.int8), mf, ms


def explain(close, ps, f, s):
    n = len(close)
    ex, d = exact_signals(ps, f, s, n)
    vb, mf, ms = vbt_signals(close, f, s)
    # Only decisions that can change a long-only position matter; compare the
    # raw cross decisions up to the first divergence.
    diff = np.nonzero(ex != vb)[0]
    if len(diff) == 0:
        return "none", None
    t = int(diff[0])
    k = t - (s - 1)
    exact_sign = int(np.sign(d[k])) if k >= 0 else 0
    float_sign = int(np.sign(mf[t] - ms[t]))
    if exact_sign != 0 and float_sign != exact_sign:
        return "float", t
    prev_tie = k >= 1 and d[k - 1] == 0
    if exact_sign == 0 or prev_tie:
        return "tie", t
    prev_float = int(np.sign(mf[t - 1] - ms[t - 1]))
    prev_exact = int(np.sign(d[k - 1])) if k >= 1 else 0
    if prev_exact != 0 and prev_float != prev_exact:
        return "float", t
    return "other", t


def main():
    csv, grodt_out, vbt_outs = sys.argv[1], sys.argv[2], sys.argv[3:]
    df = pd.read_csv(csv)
    close = df["close"].to_numpy(float)
    raw = np.round(close * 100).astype(np.int64)
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
        for _, row in m[~cent].iterrows():
            f, s = int(row["fast"]), int(row["slow"])
            why, t = explain(close, ps, f, s)
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
                    "unexplained": unexplained,
                }
            )
        )


if __name__ == "__main__":
    main()
