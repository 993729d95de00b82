"""Issue 13 part 4: alerts that reach someone. Used by check-policy.py
(subcommands scrape-alerts, alertmanager); each function returns one line
per violation.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
_SELECTOR = re.compile(r'\bup\s*\{([^}]*)\}')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def alert_rules(rules_dir: Path) -> list[dict]:
    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            out += [r for r in group.get("rules", []) if r.get("alert")]
    return out


def _selector_matches(selector: str, job: str) -> bool:
    ok = False
    for name, op, value in _LABEL.findall(selector):
        if name != "job":
            continue
        full = re.fullmatch(value, job) is not None if op in ("=~", "!~") else value == job
        if op in ("=", "=~") and not full or op in ("!=", "!~") and full:
            return False
        ok = ok or op in ("=", "=~")
    return ok


def covering_alerts(job: str, rules: list[dict]) -> tuple[list[str], list[str]]:
    """(alerts firing on `up == 0` of this job, alerts on `absent(up{job=...})` of it)."""
    down, absent = [], []
    for r in rules:
        expr = " ".join(str(r["expr"]).split())
        for m in re.finditer(r'absent\s*\(\s*up\s*\{([^}]*)\}\s*\)', expr):
            if dict((n, v) for n, op, v in _LABEL.findall(m.group(1)) if op == "=").get("job") == job:
                absent.append(r["alert"])
        for m in re.finditer(r'\bup\s*\{([^}]*)\}\s*==\s*0\b', expr):
            if _selector_matches(m.group(1), job):
                down.append(r["alert"])
    return down, absent


def check_scrape_alerts(prometheus_yml: Path, rules_dir: Path) -> list[str]:
    """Every job Prometheus scrapes has an `up == 0` alert and an
    `absent(up{job="<job>"})` alert."""
    config = yaml.safe_load(prometheus_yml.read_text(encoding="utf-8"))
    rules = alert_rules(rules_dir)
    problems = []
    for job in (j["job_name"] for j in config.get("scrape_configs", [])):
        down, absent = covering_alerts(job, rules)
        if not down:
            problems.append(f"job {job}: no alert on up{{job=\"{job}\"}} == 0 (a dead target pages nobody)")
        if not absent:
            problems.append(f"job {job}: no alert on absent(up{{job=\"{job}\"}}) "
                            f"(a job whose targets vanish pages nobody)")
    return problems


def check_unique_targets(prometheus_yml: Path) -> list[str]:
    """No target is scraped by two jobs (static targets and DNS names with
    their port): each series would be stored twice and every sum() doubled."""
    config = yaml.safe_load(prometheus_yml.read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    problems = []
    for job in config.get("scrape_configs", []):
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        targets += [f"{n}:{sd.get('port')}" for sd in job.get("dns_sd_configs", []) for n in sd.get("names", [])]
        for t in targets:
            if t in seen and seen[t] != job["job_name"]:
                problems.append(f"{prometheus_yml.name}: {t} is scraped by jobs {seen[t]} and {job['job_name']}")
            seen.setdefault(t, job["job_name"])
    return problems


# ---- Alertmanager --------------------------------------------------------------

def parse_matcher(text: str) -> tuple[str, str, str]:
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"cannot read matcher {text!r}")
    return m.group(1), m.group(2), m.group(3)


def matches(matchers: list[str], labels: dict) -> bool:
    for name, op, value in map(parse_matcher, matchers):
        got = labels.get(name, "")
        hit = re.fullmatch(value, got) is not None if op in ("=~", "!~") else got == value
        if op in ("=", "=~") and not hit or op in ("!=", "!~") and hit:
            return False
    return True


def route_receivers(route: dict, labels: dict) -> list[str]:
    """Receivers an alert with `labels` reaches (first matching child unless continue)."""
    for child in route.get("routes", []) or []:
        if matches(child.get("matchers", []), labels):
            got = route_receivers({**child, "receiver": child.get("receiver", route.get("receiver"))}, labels)
            if not child.get("continue"):
                return got
            return got + route_receivers({**route, "routes": route["routes"][route["routes"].index(child) + 1:]},
                                         labels)
    return [route.get("receiver")]


def expected_alerts(tests_dir: Path) -> list[dict]:
    """The labels of every alert the promtool tests expect to fire (alertname added)."""
    out = []
    for path in sorted(tests_dir.glob("*.test.yml")):
        for test in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("tests", []):
            for art in test.get("alert_rule_test", []):
                for exp in art.get("exp_alerts", []) or []:
                    out.append({**exp.get("exp_labels", {}), "alertname": art["alertname"]})
    return out


def check_alertmanager(config: dict | None, rules: list[dict], fired: list[dict]) -> list[str]:
    """Routing reaches a webhook and an email receiver (critical alerts both);
    an inhibit rule silences the symptom alerts of a service while its target
    is down: its source matches every alert on `up == 0`/`absent(up)` of the
    grodt jobs, its target every other alert that names a service, and the
    `equal` labels are on both (as the promtool tests' expected labels show)."""
    if config is None:
        return ["no Alertmanager configuration (deploy/alertmanager/alertmanager.yml): alerts reach nobody"]
    problems = []
    receivers = {r["name"]: r for r in config.get("receivers", [])}
    route = config.get("route") or {}
    kinds = {"critical": {"webhook_configs", "email_configs"}, "warning": {"webhook_configs"}}
    for severity, want in kinds.items():
        names = route_receivers(route, {"severity": severity, "alertname": "X", "service": "risk"})
        have = {k for n in names for k in receivers.get(n, {}) if k.endswith("_configs") and receivers[n][k]}
        if not want <= have:
            problems.append(f"alertmanager: a {severity} alert reaches {names} with {sorted(have)}, "
                            f"wants {sorted(want)}")
    down = sorted({r["alert"] for r in rules
                   if re.search(r"\bup\s*\{[^}]*job\s*=~?\s*\"grodt", str(r["expr"]))
                   or re.search(r"absent\s*\(\s*up\s*\{[^}]*grodt-", str(r["expr"]))})
    symptoms = sorted({a["alertname"] for a in fired if "service" in a} - set(down))
    inhibit = config.get("inhibit_rules") or []
    for a in down:
        rule = next((r for r in inhibit if matches(r.get("source_matchers", []), {"alertname": a})), None)
        if rule is None:
            problems.append(f"alertmanager: no inhibit rule has {a} as its source: its symptoms page too")
            continue
        for s in symptoms:
            if not matches(rule.get("target_matchers", []), {"alertname": s}):
                problems.append(f"alertmanager: {s} (a symptom of its service) is not inhibited while {a} fires")
        if matches(rule.get("target_matchers", []), {"alertname": a}):
            problems.append(f"alertmanager: the inhibit rule's targets include the cause {a}")
        equal = rule.get("equal") or []
        if not equal:
            problems.append(f"alertmanager: inhibit rule for {a} has no `equal`: one dead service silences all")
        for alert in fired:
            if alert["alertname"] in symptoms + [a] and not all(e in alert for e in equal):
                problems.append(f"alertmanager: {alert['alertname']} fires without {equal} "
                                f"(promtool test labels {sorted(alert)}), so inhibition cannot pair it")
                break
    return problems
