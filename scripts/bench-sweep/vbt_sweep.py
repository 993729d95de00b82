"""vectorbt's side of `scripts/bench sweep`: the SMA crossover grid fast 5..50,
slow 10..200, fast < slow (7,925 sets), long-only, no fees, next-bar-open fills,
on a 1-minute OHLCV CSV, in vectorbt's fastest configuration.

How vectorbt is driven (its documented fast path):
- `vbt.MA.run` with the whole chunk's window lists (the indicator caches the
  rolling mean of each distinct window), `ma_crossed_above` / `ma_crossed_below`
  for the signals (decided at bar t's close);
- `Portfolio.from_signals` with the signals shifted one bar and `price=open`, so
  an order decided at t's close fills at t+1's open, as GRODT's engine does;
  `size=inf` (all cash), `size_granularity=1e-8` (GRODT's BTC quantity step,
  floored like its sizing), no fees, long only;
- the engine chosen by `--engine` (`numba` or `rust`, vectorbt-rust); a warm-up
  on a short slice runs first so the numba compile is not timed;
- the grid in chunks of `--chunk` sets so the wide arrays stay within memory.

Prints one JSON line of timings and writes every set's final value to `--out`.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd
import vectorbt as vbt


def grid():
    return [(f, s) for f in range(5, 51) for s in range(10, 201) if f < s]


def run(close, open_, sets, chunk):
    values = np.empty(len(sets))
    for k in range(0, len(sets), chunk):
        part = sets[k : k + chunk]
        fast = vbt.MA.run(close, [f for f, _ in part], short_name="fast")
        slow = vbt.MA.run(close, [s for _, s in part], short_name="slow")
        entries = fast.ma_crossed_above(slow).to_numpy()
        exits = fast.ma_crossed_below(slow).to_numpy()
        # Decided at t's close, filled at t+1's open.
        entries = np.vstack([np.zeros((1, len(part)), bool), entries[:-1]])
        exits = np.vstack([np.zeros((1, len(part)), bool), exits[:-1]])
        pf = vbt.Portfolio.from_signals(
            close.to_numpy()[:, None],
            entries,
            exits,
            price=open_.to_numpy()[:, None],
            size=np.inf,
            size_granularity=1e-8,
            init_cash=100_000.0,
            fees=0.0,
            direction="longonly",
            freq="1min",
        )
        values[k : k + len(part)] = np.asarray(pf.final_value())
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--engine", choices=["numba", "rust"], default="numba")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--out")
    a = ap.parse_args()
    vbt.settings["engine"] = a.engine
    df = pd.read_csv(a.csv)
    close, open_ = df["close"].astype(float), df["open"].astype(float)
    sets = grid()
    # Warm-up: compiles every numba function the timed run calls.
    run(close.iloc[:2000], open_.iloc[:2000], sets[:8], a.chunk)
    t0, c0 = time.perf_counter(), time.process_time()
    values = run(close, open_, sets, a.chunk)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    set_bars = len(close) * len(sets)
    print(
        json.dumps(
            {
                "engine": f"vectorbt-{vbt.__version__}-{a.engine}",
                "threads": os.environ.get("NUMBA_NUM_THREADS", "default"),
                "bars": len(close),
                "sets": len(sets),
                "chunk": a.chunk,
                "seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 2),
                "set_bars_per_s": f"{set_bars / wall:.4e}",
                "set_bars_per_cpu_s": f"{set_bars / cpu:.4e}",
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
        )
    )
    if a.out:
        with open(a.out, "w") as f:
            f.write("fast,slow,final_value\n")
            for (fa, sl), v in zip(sets, values):
                f.write(f"{fa},{sl},{float(v)!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
