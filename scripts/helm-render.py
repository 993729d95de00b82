#!/usr/bin/env python3
"""Render and lint the GRODT Helm chart offline, without a helm binary.

  scripts/helm-render.py ENV [--out FILE] [--release NAME] [--namespace NS]
                         [--set-string key.path=value ...] [--set key.path=yaml ...] [--lint]

Uses helm-python-sdk (Helm's own Go engine in a shared library): the chart at
helm/grodt is rendered with values.yaml plus helm/grodt/values-ENV.yaml, the
way `helm template -f values-ENV.yaml` would, and written as one multi-document
YAML stream (stdout or --out). Hook manifests (the migration Job) are included.
--lint also runs `helm lint --strict` with the same values and fails on any
warning or error. Exit status 1 with a message on any failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "grodt"
ENVS = ("dev", "staging", "prod")


def set_path(values: dict, dotted: str, value: str) -> None:
    node = values
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("env", choices=ENVS)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--release", default="grodt")
    ap.add_argument("--namespace", default="grodt")
    ap.add_argument("--set-string", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML",
                    help="like --set-string, the value read as YAML (true, 3, ...)")
    ap.add_argument("--lint", action="store_true", help="also run helm lint --strict")
    ap.add_argument("--kube-version", default="v1.30.0")
    args = ap.parse_args()

    try:
        import helm_python
    except ImportError:
        print("helm-render: helm-python-sdk is not installed (scripts/check-deploy installs it)", file=sys.stderr)
        return 1

    values_file = CHART / f"values-{args.env}.yaml"
    values = helm_python.values_from_yaml(values_file.read_text(encoding="utf-8"))
    for item in args.set_string:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"helm-render: --set-string wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 1
        set_path(values, key, value)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"helm-render: --set wants KEY=YAML, got {item!r}", file=sys.stderr)
            return 1
        import yaml

        set_path(values, key, yaml.safe_load(value))

    if args.lint:
        report = helm_python.lint(str(CHART), values, strict=True, namespace=args.namespace,
                                  kube_version=args.kube_version)
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        for m in report.get("messages", []):
            level = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m.get("severity"), "?")
            print(f"helm-render: lint [{level}] {m.get('path')}: {m.get('error')}", file=sys.stderr)
        errors = report.get("errors") or []
        for e in errors:
            print(f"helm-render: lint error: {e}", file=sys.stderr)
        if bad or errors:
            print(f"helm-render: helm lint --strict failed for {args.env}", file=sys.stderr)
            return 1

    try:
        chart = helm_python.Chart.load(str(CHART))
        rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    except helm_python.HelmError as err:
        print(f"helm-render: rendering {args.env} failed: {err}", file=sys.stderr)
        return 1

    docs = []
    for path in sorted(rendered):
        text = rendered[path].strip()
        if not path.endswith((".yaml", ".yml")) or not text:
            continue  # NOTES.txt, helpers, disabled templates
        body = "\n".join(line for line in text.splitlines() if line.strip() != "---").strip()
        if body:
            docs.append(f"# Source: {path}\n{text.removeprefix('---').strip()}")
    if not docs:
        print(f"helm-render: {args.env} rendered no manifests", file=sys.stderr)
        return 1
    out = "---\n" + "\n---\n".join(docs) + "\n"
    if args.out:
        args.out.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
