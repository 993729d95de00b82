#!/usr/bin/env bash
# scripts/bench sweep: GRODT's sweep kernel beside vectorbt on the same grid and
# data (SMA fast 5..50, slow 10..200, fast < slow: 7,925 sets; long-only, no
# fees, next-bar-open fills; the BTC/USDT 1-minute sample, 130,708 bars).
#
#   scripts/bench sweep [--csv PATH] [--chunk N] [--short] [--engines numba,rust] [--one-core] [--native]
#
# --engines picks vectorbt's engines (default both); --one-core skips the
# all-cores runs (the issue's ratio is per core; a full run takes 40 minutes
# here, the rust engine on one core about 7).
# --native also builds GRODT for this CPU (RUSTFLAGS=-C target-cpu=native, its
# own target directory) and runs it on one core beside the baseline x86-64
# build: numba compiles vectorbt's loops for the host CPU, so that is
# GRODT's like-for-like fastest configuration; the baseline is what ships.
# --short runs both on the first 3,000 bars (a check that the harness works, in
# about a minute once built). Runs, each under /usr/bin/time -v for peak memory:
#   GRODT one core   (Threads::One, pinned to one CPU with taskset)
#   GRODT all cores  (Threads::All, rayon's pool)
#   vectorbt numba and rust engines, one core (NUMBA_NUM_THREADS=1,
#   RAYON_NUM_THREADS=1, pinned), and the faster of the two on all cores.
# Then compares every set's final value (scripts/bench-sweep/compare.py).
# vectorbt is installed from PyPI, pinned (requirements.txt), into
# ~/.cache/grodt/vectorbt-venv on first use. Figures: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
csv=data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv
chunk=100
short=
engines="numba rust"
all_cores=1
native=
while [ $# -gt 0 ]; do
  case "$1" in
    --csv) csv=$2; shift 2 ;;
    --chunk) chunk=$2; shift 2 ;;
    --short) short=1; shift ;;
    --engines) engines=${2//,/ }; shift 2 ;;
    --one-core) all_cores=; shift ;;
    --native) native=1; shift ;;
    *) echo "scripts/bench sweep: unknown argument '$1'" >&2; exit 64 ;;
  esac
done
out=${TMPDIR:-/tmp}/grodt-bench-sweep
mkdir -p "$out"
if [ -n "$short" ]; then
  head -3001 "$csv" > "$out/short.csv"
  csv=$out/short.csv
fi

venv=${HOME}/.cache/grodt/vectorbt-venv
req=scripts/bench-sweep/requirements.txt
if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
py=$venv/bin/python

"${CARGO:-cargo}" build --release --locked -p grodt-sweep --example sweep_grid
grodt=${CARGO_TARGET_DIR:-target}/release/examples/sweep_grid
if [ -n "$native" ]; then
  native_dir=${CARGO_TARGET_DIR:-target}-native
  RUSTFLAGS="-C target-cpu=native" CARGO_TARGET_DIR=$native_dir \
    "${CARGO:-cargo}" build --release --locked -p grodt-sweep --example sweep_grid
  grodt_native=$native_dir/release/examples/sweep_grid
fi

date -u '+%Y-%m-%d %H:%M UTC'
lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)' || true
uptime
ncpu=$(nproc)
one=(env RAYON_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0)

# Runs a command under /usr/bin/time -v: its JSON line, then its peak RSS.
timed() {
  local name=$1; shift
  /usr/bin/time -v "$@" 2> "$out/$name.time" | tee "$out/$name.json"
  grep -E 'Maximum resident set size' "$out/$name.time" | sed "s/^\s*/  $name: /"
}

echo "== GRODT"
timed grodt-one "${one[@]}" "$grodt" --csv "$csv" --threads one --runs 3 --out "$out/grodt.csv"
if [ -n "$native" ]; then
  timed grodt-native-one "${one[@]}" "$grodt_native" --csv "$csv" --threads one --runs 3 --out "$out/grodt-native.csv"
  if cmp -s "$out/grodt.csv" "$out/grodt-native.csv"; then
    echo "  native build: every set's outcome identical to the baseline build's"
  else
    echo "  native build: outcomes differ from the baseline build's" >&2
    exit 1
  fi
fi
if [ -n "$all_cores" ]; then
  timed grodt-all "$grodt" --csv "$csv" --threads all --runs 3
fi
echo "== vectorbt ($("$py" -c 'import vectorbt; print(vectorbt.__version__)'))"
for engine in $engines; do
  timed "vbt-$engine-one" "${one[@]}" "$py" scripts/bench-sweep/vbt_sweep.py \
    --csv "$csv" --engine "$engine" --chunk "$chunk" --out "$out/vbt-$engine.csv"
done
if [ "$ncpu" -gt 1 ] && [ -n "$all_cores" ]; then
  for engine in $engines; do
    timed "vbt-$engine-all" "$py" scripts/bench-sweep/vbt_sweep.py \
      --csv "$csv" --engine "$engine" --chunk "$chunk"
  done
fi
# GRODT once more after vectorbt: both ends of the sitting.
timed grodt-one-after "${one[@]}" "$grodt" --csv "$csv" --threads one --runs 3
if [ -n "$native" ]; then
  timed grodt-native-one-after "${one[@]}" "$grodt_native" --csv "$csv" --threads one --runs 3
fi
echo "== agreement of the final values (to the cent)"
compared=()
for engine in $engines; do compared+=("$engine=$out/vbt-$engine.csv"); done
"$py" scripts/bench-sweep/compare.py "$csv" "$out/grodt.csv" "${compared[@]}"
echo "outputs in $out"
