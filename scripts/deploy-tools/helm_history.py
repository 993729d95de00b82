#!/usr/bin/env python3
"""Which revision a failed GRODT deploy rolls back to, from `helm history -o json`.

  helm history REL -n NS -o json --max 50 | helm_history.py target [--before N]

Prints the revision to roll back to, or `none <reason>` (exit 0 either way;
exit 1 when there is no healthy revision at all, exit 64 on bad input).

The target is the newest revision that was healthy (status `deployed` or
`superseded`) before the failed attempt: with --before N (the revision that
was current when scripts/deploy started its upgrade, from its state file) the
newest healthy revision <= N; without, the newest healthy revision older than
the newest failed/pending one. NOT `helm rollback`'s default "the revision
before the current one": after a failed `--atomic` upgrade that is the failed
revision itself. When Helm's --atomic already rolled back (the newest revision
is `deployed` and says "Rollback to <target>"), there is nothing to do.
"""

from __future__ import annotations

import argparse
import json
import sys

HEALTHY = {"deployed", "superseded"}


def choose(history: list[dict], before: int | None = None) -> tuple[int | None, str]:
    """(target revision or None, reason)."""
    revs = sorted(history, key=lambda h: int(h["revision"]))
    if not revs:
        return None, "the release has no history"
    latest = revs[-1]
    if before is not None:
        candidates = [h for h in revs if int(h["revision"]) <= before and h.get("status") in HEALTHY]
    else:
        bad = [int(h["revision"]) for h in revs if h.get("status") not in HEALTHY]
        # With no failed revision, "before the failure" is "before the current one".
        limit = max(bad) if bad else int(latest["revision"])
        candidates = [h for h in revs if int(h["revision"]) < limit and h.get("status") in HEALTHY]
    if not candidates:
        return None, "no deployed or superseded revision before the failed one"
    target = int(candidates[-1]["revision"])
    if latest.get("status") == "deployed" and int(latest["revision"]) > target \
            and str(latest.get("description", "")).strip() == f"Rollback to {target}":
        return None, f"already rolled back: revision {latest['revision']} is 'Rollback to {target}' and deployed"
    if int(latest["revision"]) == target and latest.get("status") == "deployed":
        return None, f"revision {target} is the current, deployed one"
    return target, f"revision {target} ({candidates[-1].get('status')}) is the last healthy one"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["target"])
    ap.add_argument("--before", type=int)
    args = ap.parse_args(argv)
    try:
        history = json.load(sys.stdin)
        target, reason = choose(history, args.before)
    except (ValueError, KeyError, TypeError) as err:
        print(f"helm_history: cannot read helm history JSON: {err}", file=sys.stderr)
        return 64
    if target is None:
        print(f"none {reason}")
        return 1 if reason.startswith("no ") or "no history" in reason else 0
    print(target)
    print(f"helm_history: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
