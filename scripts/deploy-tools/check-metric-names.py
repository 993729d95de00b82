#!/usr/bin/env python3
"""Cross-check the metric names used by dashboards and alert rules.

Every metric a Grafana dashboard or a Prometheus rule queries must be one the
services export. The exported names come from one of:

  --scrape URL ...        /metrics endpoints of running services (text format)
  --exposition FILE ...   recorded expositions in the same text format
  --names-file FILE       one metric name per line (# comments allowed)

A name not exported is accepted only when it is listed in the planned file
(--planned, names that later issues will export, each documented in
docs/metrics.md under "Planned by later issues") AND the artifact is one of
--planned-ok. Artifacts given with --strict (the system dashboard, the
service alerts) must use exported names only. A planned name that a scrape
shows as exported is an error too: it must leave the planned list.

A planned line may end in `conditional`: a name a service does export, but
with no series until a setting or an event makes one (an idle scrape cannot
show it). It must be documented in docs/metrics.md (anywhere), is accepted
where planned names are, and may or may not appear in a scrape.

Recorded series (`record:` in the rule files) count as defined; an artifact
that uses one inherits the names its expression uses. `up` and the other
series Prometheus makes itself are always defined.

Exit status 0 when everything checks, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grodt_services import SERVICES  # noqa: E402

# Series Prometheus itself writes for every target.
SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "and", "or", "unless", "inf", "nan", "atan2"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>[0-9][0-9A-Za-z_.+-]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>[{}()\[\],@])
  | (?P<op>[-+*/%^=!<>~]+)
    """,
    re.VERBOSE,
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels, keywords)."""
    tokens = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
    names: set[str] = set()
    i = 0
    depth_brace = depth_bracket = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            depth_brace += 1
        elif text == "}":
            depth_brace -= 1
        elif text == "[":
            depth_bracket += 1
        elif text == "]":
            depth_bracket -= 1
        elif depth_brace or depth_bracket:
            pass
        elif kind == "ident":
            lowered = text.lower()
            if lowered in LABEL_LISTS and nxt == "(":
                # skip "(label, label)"
                while i < len(tokens) and tokens[i][1] != ")":
                    i += 1
            elif lowered in KEYWORDS or lowered in AGGREGATORS or nxt == "(":
                pass
            else:
                names.add(text)
        i += 1
    return names


def parse_exposition(text: str) -> tuple[set[str], dict[str, str]]:
    """Sample names and `# TYPE` families of a Prometheus text exposition."""
    samples: set[str] = set()
    types: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if not m:
            raise ValueError(f"not an exposition line: {line!r}")
        samples.add(m.group())
    return samples, types


def read_planned(path: Path, conditional: set[str] | None = None) -> dict[str, str]:
    """`name type [conditional]` per line -> {name: type}; names marked
    `conditional` (exported, but with no series until a setting or an event
    makes one: an idle scrape cannot show them) are added to `conditional`."""
    planned = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (2, 3) or parts[1] not in {"counter", "gauge", "histogram", "summary"} \
                or parts[2:] not in ([], ["conditional"]):
            raise ValueError(f"{path}:{n}: want 'metric_name type [conditional]', got {raw!r}")
        planned[parts[0]] = parts[1]
        if parts[2:] and conditional is not None:
            conditional.add(parts[0])
    return planned


def family_names(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {name + "_bucket", name + "_sum", name + "_count"}
    if kind == "summary":
        return {name, name + "_sum", name + "_count"}
    return {name}


def documented_names(doc: Path) -> tuple[set[str], set[str]]:
    """Names in backticks in docs/metrics.md (all, and those in the planned section)."""
    text = doc.read_text(encoding="utf-8")
    split = re.split(r"^##+ .*planned by later issues.*$", text, maxsplit=1, flags=re.I | re.M)
    planned_text = split[1] if len(split) == 2 else ""

    def expand(chunk: str) -> set[str]:
        out = set()
        for tok in re.findall(r"`([A-Za-z_:<>][A-Za-z0-9_:<>]*)", chunk):
            if "<service>" in tok:
                out |= {tok.replace("<service>", s.prefix[len("grodt_"):-1]) for s in SERVICES}
            else:
                out.add(tok)
        return out

    return expand(text), expand(planned_text)


def artifact_exprs(path: Path) -> tuple[list[str], dict[str, str]]:
    """(expressions, {recorded name: its expression}) of a dashboard or rule file."""
    if path.suffix == ".json":
        exprs: list[str] = []

        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "expr" and isinstance(v, str):
                        exprs.append(v)
                    else:
                        walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(json.loads(path.read_text(encoding="utf-8")))
        return exprs, {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    exprs, records = [], {}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "record" in rule:
                records.setdefault(rule["record"], "")
                records[rule["record"]] += " or (" + rule["expr"] + ")"
            else:
                exprs.append(rule["expr"])
    return exprs, records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrape", nargs="+", default=[], metavar="URL")
    ap.add_argument("--exposition", nargs="+", default=[], metavar="FILE")
    ap.add_argument("--names-file", type=Path)
    ap.add_argument("--planned", type=Path, required=True)
    ap.add_argument("--metrics-doc", type=Path, required=True)
    ap.add_argument("--strict", nargs="+", default=[], type=Path, metavar="ARTIFACT")
    ap.add_argument("--planned-ok", nargs="+", default=[], type=Path, metavar="ARTIFACT")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    if not (args.scrape or args.exposition or args.names_file):
        ap.error("give --scrape, --exposition or --names-file: the exported names to check against")

    problems: list[str] = []
    exported: set[str] = set()
    exported_types: dict[str, str] = {}
    for url in args.scrape:
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as resp:
                body = resp.read().decode("utf-8")
        except OSError as err:
            problems.append(f"scrape {url}: {err}")
            continue
        names, types = parse_exposition(body)
        if not names:
            problems.append(f"scrape {url}: no samples")
        exported |= names
        exported_types.update(types)
    for f in args.exposition:
        names, types = parse_exposition(Path(f).read_text(encoding="utf-8"))
        exported |= names
        exported_types.update(types)
    if args.names_file:
        for line in args.names_file.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                exported.add(line)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1

    conditional: set[str] = set()
    planned = read_planned(args.planned, conditional)
    planned_samples: dict[str, str] = {}
    for name, kind in planned.items():
        for sample in family_names(name, kind):
            planned_samples[sample] = name
    documented, documented_planned = documented_names(args.metrics_doc)

    for name, kind in planned.items():
        if name in conditional:
            # Exported by a service, only not on every scrape: documented with
            # its service, and no error when a scrape happens to show it.
            if name not in documented:
                problems.append(f"{args.planned}: {name} (conditional) is not documented in {args.metrics_doc}")
            continue
        if family_names(name, kind) & exported:
            problems.append(f"{args.planned}: {name} is exported now: remove it from the planned list")
        if name not in documented_planned:
            problems.append(f"{args.planned}: {name} is not documented under 'Planned by later issues' in {args.metrics_doc}")

    artifacts = [(p, True) for p in args.strict] + [(p, False) for p in args.planned_ok]
    records: dict[str, str] = {}
    parsed = []
    for path, strict in artifacts:
        exprs, recs = artifact_exprs(path)
        records.update(recs)
        # A recording rule file is itself an artifact: its expressions are checked.
        parsed.append((path, strict, exprs + list(recs.values())))

    def resolve(name: str, seen: frozenset = frozenset()) -> set[str]:
        """Raw metric names behind a (possibly recorded) name."""
        if name in records and name not in seen:
            out: set[str] = set()
            for inner in promql_metric_names(records[name]):
                out |= resolve(inner, seen | {name})
            return out
        return {name}

    checked = 0
    for path, strict, exprs in parsed:
        used: set[str] = set()
        for expr in exprs:
            try:
                for name in promql_metric_names(expr):
                    used |= resolve(name)
            except ValueError as err:
                problems.append(f"{path}: {err}")
        for name in sorted(used):
            checked += 1
            if name in SYNTHETIC:
                continue
            family = planned_samples.get(name)
            if name in exported:
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if name not in documented and base not in documented:
                    problems.append(f"{path}: {name} is exported but not documented in {args.metrics_doc}")
                continue
            if family is None:
                problems.append(f"{path}: {name} is not exported by any scraped service and not planned")
            elif strict:
                problems.append(f"{path}: {name} is only planned; this artifact must use exported names")
        print(f"check-metric-names: {path}: {len(used)} names ({'exported only' if strict else 'planned allowed'})")

    if problems:
        for p in problems:
            print(f"check-metric-names: {p}", file=sys.stderr)
        return 1
    print(f"check-metric-names: OK, {checked} name uses against {len(exported)} exported and {len(planned)} planned names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
