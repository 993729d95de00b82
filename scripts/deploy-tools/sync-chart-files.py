#!/usr/bin/env python3
"""Copy the Prometheus rules and Grafana dashboards of deploy/ into the chart.

  scripts/deploy-tools/sync-chart-files.py [--check]

Helm can only read files inside the chart, so helm/grodt/files/ holds
generated copies: deploy/prometheus/rules/*.yml -> files/prometheus-rules/,
deploy/grafana/dashboards/*.json -> files/dashboards/. Edit deploy/, then run
this. --check (scripts/check-deploy) fails when a copy differs, is missing or
is left over, so the PrometheusRule and dashboard ConfigMaps the chart ships
are always the ones Compose runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    (ROOT / "deploy/prometheus/rules", "*.yml", ROOT / "helm/grodt/files/prometheus-rules"),
    (ROOT / "deploy/grafana/dashboards", "*.json", ROOT / "helm/grodt/files/dashboards"),
]
HEADER = {".yml": "# GENERATED from {src} by scripts/deploy-tools/sync-chart-files.py: edit that file, not this.\n"}


def expected(pairs=PAIRS) -> dict[Path, bytes]:
    want = {}
    for src_dir, pattern, dst_dir in pairs:
        for src in sorted(src_dir.glob(pattern)):
            header = HEADER.get(src.suffix, "").format(src=src.relative_to(ROOT)).encode()
            want[dst_dir / src.name] = header + src.read_bytes()
    return want


def differences(pairs=PAIRS) -> list[str]:
    want = expected(pairs)
    problems = []
    for path, content in want.items():
        if not path.exists():
            problems.append(f"{path.relative_to(ROOT)} is missing")
        elif path.read_bytes() != content:
            problems.append(f"{path.relative_to(ROOT)} differs from its source in deploy/")
    for _, pattern, dst_dir in pairs:
        for path in sorted(dst_dir.glob("*")):
            if path not in want:
                problems.append(f"{path.relative_to(ROOT)} has no source in deploy/ (remove it)")
    return problems


def main() -> int:
    if sys.argv[1:] == ["--check"]:
        problems = differences()
        for p in problems:
            print(f"sync-chart-files: {p}: run scripts/deploy-tools/sync-chart-files.py", file=sys.stderr)
        return 1 if problems else 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 64
    want = expected()
    for _, _, dst_dir in PAIRS:
        dst_dir.mkdir(parents=True, exist_ok=True)
        for path in dst_dir.glob("*"):
            if path not in want:
                path.unlink()
    for path, content in want.items():
        path.write_bytes(content)
    print(f"sync-chart-files: {len(want)} files in helm/grodt/files/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
