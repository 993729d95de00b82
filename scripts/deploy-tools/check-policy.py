#!/usr/bin/env python3
"""Project rules the generic validators do not know about.

hadolint, Compose, kubernetes-validate and helm lint say whether a file is
well-formed; this says whether it is what issue 5 and docs/conventions.md ask
for. Subcommands (each exits 1 with one line per violation):

  conventions                       deploy tools' service table == docs/conventions.md,
                                    Helm values and Dockerfile stages use those ports
  compose ENV CONFIG.json           `docker compose ... config --format json` output
                                    (with check_security: tokens file, Redis password,
                                    Postgres roles, TLS in prod)
  compose-redis-tls ENV CONFIG.json the same with compose/docker-compose.redis-tls.yml merged
                                    on: Redis on its TLS port only, every service rediss://
                                    with a mounted CA file
  helm ENV RENDERED.yaml            output of scripts/helm-render.py (with the
                                    autoscaling rules: KEDA watches the key and group
                                    the workers read, with the Secret they use)
  alerts                            every alert has a runbook section in
                                    docs/operations.md that its runbook_url points to
  workflows [CD.yml CI.yml]         CD runs only after CI passed on that commit, rollback
                                    only after an attempted upgrade, scan before push,
                                    SBOM attached, every `uses:` pinned to a commit SHA,
                                    CI checks metric names against a live scrape
  pins                              every base/third-party image pinned by digest or listed
                                    in deploy/pins-pending.txt (listed ones printed)
  scrape-alerts                     every job of prometheus.yml has an up == 0 and an
                                    absent(up{job=...}) alert; no target in two jobs
  alertmanager [CONFIG]             routing to webhook and email, inhibition of symptoms
                                    while a target is down
  images                            Compose and Helm default image tags are tags CD
                                    publishes; release profile strips and uses thin LTO
"""

from __future__ import annotations

import json
import re
import tomllib
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grodt_services import SERVICES, check_against_conventions  # noqa: E402
import check_supply_chain as supply  # noqa: E402
import check_alerting as alerting  # noqa: E402
import check_security as security  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {s.name: s for s in SERVICES}
APP_UID = "65532"
PUBLISHED_OK = {s.name for s in SERVICES if s.name != "backtest-worker"} | {"grafana", "jaeger"}
# Alertmanager reaches its receivers through the frontend network, publishes nothing.
BACKEND_ONLY = {"postgres", "redis", "prometheus", "migrate", "backtest-worker"}
SECRET_LIKE = re.compile(r"(password|passwd|secret)\s*[=:]\s*\S|://[^/@\s:]+:[^/@\s]+@", re.I)


def check_conventions() -> list[str]:
    problems = check_against_conventions(ROOT / "docs" / "conventions.md")
    values = yaml.safe_load((ROOT / "helm/grodt/values.yaml").read_text(encoding="utf-8"))
    for s in SERVICES:
        v = values["services"].get(s.name)
        if v is None:
            problems.append(f"helm values.yaml: no services.{s.name}")
            continue
        want = (s.grpc_port, s.http_port, s.grpc_service)
        got = (v.get("grpcPort"), v.get("httpPort"), v.get("grpcService"))
        if got != want:
            problems.append(f"helm values.yaml services.{s.name}: {got} != conventions {want}")
    extra = set(values["services"]) - set(BY_NAME)
    problems += [f"helm values.yaml: unknown service {n}" for n in sorted(extra)]

    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text(encoding="utf-8")
    stages = {}
    current = None
    for line in dockerfile.replace("\\\n", " ").splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            stages[current] = ""
        elif current:
            stages[current] += line + "\n"
    for s in SERVICES:
        body = stages.get(s.name)
        if body is None:
            problems.append(f"Dockerfile: no stage '{s.name}'")
            continue
        if not re.search(rf"^EXPOSE\s+{s.grpc_port}\s+{s.http_port}\s*$", body, re.M):
            problems.append(f"Dockerfile stage {s.name}: want 'EXPOSE {s.grpc_port} {s.http_port}'")
        hc = f'"/usr/local/bin/grodt", "health", "127.0.0.1:{s.grpc_port}", "{s.grpc_service}"'
        if hc not in body:
            problems.append(f"Dockerfile stage {s.name}: HEALTHCHECK must run grodt health on :{s.grpc_port}")
        if f"GRODT_GRPC__ADDR=0.0.0.0:{s.grpc_port}" not in body or f"GRODT_HTTP__ADDR=0.0.0.0:{s.http_port}" not in body:
            problems.append(f"Dockerfile stage {s.name}: GRODT_GRPC__ADDR/GRODT_HTTP__ADDR do not match conventions")
    if not re.search(r"^USER\s+\d+:\d+\s*$", dockerfile, re.M):
        problems.append("Dockerfile: the runtime must run as a numeric USER uid:gid")
    return problems


def check_compose(env: str, config: dict) -> list[str]:
    problems = []
    services = config.get("services", {})
    nets = config.get("networks", {})
    if not nets.get("backend", {}).get("internal"):
        problems.append(f"compose {env}: network backend must be internal")
    for name, svc in sorted(services.items()):
        where = f"compose {env}: {name}"
        published = [p for p in svc.get("ports", []) if p.get("published")]
        if published and name not in PUBLISHED_OK:
            problems.append(f"{where}: publishes {published} but only gRPC APIs, grafana and jaeger may")
        if name in BACKEND_ONLY and set(svc.get("networks", {})) != {"backend"}:
            problems.append(f"{where}: must be on the backend network only, is on {sorted(svc.get('networks', {}))}")
        if "restart" not in svc:
            problems.append(f"{where}: no restart policy")
        if "limits" not in svc.get("deploy", {}).get("resources", {}):
            problems.append(f"{where}: no resource limits")
        for key, value in (svc.get("environment") or {}).items():
            if value and SECRET_LIKE.search(f"{key}={value}") and not key.endswith("_FILE"):
                problems.append(f"{where}: environment {key} looks like it carries a secret")
    for s in SERVICES:
        svc = services.get(s.name)
        where = f"compose {env}: {s.name}"
        if svc is None:
            problems.append(f"{where}: missing")
            continue
        test = svc.get("healthcheck", {}).get("test", [])
        if test[:4] != ["CMD", "/usr/local/bin/grodt", "health", f"127.0.0.1:{s.grpc_port}"]:
            problems.append(f"{where}: healthcheck must be grodt health 127.0.0.1:{s.grpc_port}, is {test}")
        deps = svc.get("depends_on", {})
        if deps.get("migrate", {}).get("condition") != "service_completed_successfully":
            problems.append(f"{where}: must depend on migrate with service_completed_successfully")
        for infra in ("postgres", "redis"):
            if deps.get(infra, {}).get("condition") != "service_healthy":
                problems.append(f"{where}: must depend on {infra} with service_healthy")
        env_vars = svc.get("environment") or {}
        want = {
            "GRODT_GRPC__ADDR": f"0.0.0.0:{s.grpc_port}",
            "GRODT_HTTP__ADDR": f"0.0.0.0:{s.http_port}",
            "GRODT_TELEMETRY__LOG_FORMAT": "json",
            "GRODT_ENV": env,
        }
        for key, value in want.items():
            if env_vars.get(key) != value:
                problems.append(f"{where}: {key}={env_vars.get(key)!r}, want {value!r}")
        if not env_vars.get("GRODT_TELEMETRY__OTLP_ENDPOINT", "").startswith("http://jaeger:4317"):
            problems.append(f"{where}: traces must go to jaeger:4317 over OTLP")
        if not svc.get("read_only") or str(svc.get("user", "")).split(":")[0] != APP_UID:
            problems.append(f"{where}: must run read_only as uid {APP_UID}")
    problems += check_compose_resilience(env, config)
    problems += security.check_compose_security(env, config)
    worker = services.get("backtest-worker", {})
    if worker.get("container_name") or worker.get("ports"):
        problems.append(f"compose {env}: backtest-worker must have no container_name and no ports (it is scaled)")
    if services.get("migrate", {}).get("command") != ["migrate"]:
        problems.append(f"compose {env}: migrate must run `grodt migrate`")
    return problems


def _bytes(text: str) -> int:
    """Compose/Redis sizes: 512M, 1G, 400mb, 1073741824."""
    m = re.fullmatch(r"(\d+)\s*([kmg]?)b?", str(text).strip().lower())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)]


def _seconds(text) -> float:
    """Compose durations as `config --format json` gives them (ns ints or '1m30s')."""
    if isinstance(text, (int, float)):
        return text / 1e9
    total = 0.0
    for n, unit in re.findall(r"([\d.]+)(ms|s|m|h)", str(text)):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def check_compose_resilience(env: str, config: dict) -> list[str]:
    """Issue 13 part 6 in Compose: Redis refuses writes at a maxmemory below its
    container limit (noeviction), Jaeger has a health check and bounded memory,
    the workers get at least their shutdown grace to finish a job."""
    problems = []
    services = config.get("services", {})
    redis = services.get("redis", {})
    cmd = redis.get("command") or []
    args = dict(zip(cmd, cmd[1:]))
    limit = redis.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    if args.get("--maxmemory-policy") != "noeviction":
        problems.append(f"compose {env}: redis must run with --maxmemory-policy noeviction, command is {cmd}")
    if "--maxmemory" not in args:
        problems.append(f"compose {env}: redis has no --maxmemory: it grows until the container is OOM-killed")
    elif limit is not None and _bytes(args["--maxmemory"]) >= _bytes(limit):
        problems.append(f"compose {env}: redis --maxmemory {args['--maxmemory']} must stay below its "
                        f"memory limit {limit}")
    jaeger = services.get("jaeger")
    if jaeger is not None:
        if not jaeger.get("healthcheck", {}).get("test"):
            problems.append(f"compose {env}: jaeger has no healthcheck")
        if not jaeger.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"):
            problems.append(f"compose {env}: jaeger has no memory limit")
        if not str((jaeger.get("environment") or {}).get("MEMORY_MAX_TRACES", "")).isdigit():
            problems.append(f"compose {env}: jaeger's in-memory store is unbounded (no MEMORY_MAX_TRACES)")
    worker = services.get("backtest-worker")
    if worker is not None:
        kit = (worker.get("environment") or {}).get("GRODT_SERVER__SHUTDOWN_GRACE_MS")
        stop = _seconds(worker.get("stop_grace_period", "10s"))
        if kit is None or not str(kit).isdigit():
            problems.append(f"compose {env}: backtest-worker sets no GRODT_SERVER__SHUTDOWN_GRACE_MS (its job timeout)")
        elif stop * 1000 <= int(kit):
            problems.append(f"compose {env}: backtest-worker stop_grace_period {stop:g}s does not cover "
                            f"its shutdown grace of {kit} ms: Docker kills it mid-job")
    return problems


def check_helm(env: str, docs: list[dict]) -> list[str]:
    problems = []
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    for s in SERVICES:
        dep = next((d for d in deployments.values()
                    if d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == s.name), None)
        where = f"helm {env}: {s.name}"
        if dep is None:
            problems.append(f"{where}: no Deployment")
            continue
        pod = dep["spec"]["template"]
        spec = pod["spec"]
        c = spec["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports != {"grpc": s.grpc_port, "http": s.http_port}:
            problems.append(f"{where}: container ports {ports}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            got = c.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") != "http":
                problems.append(f"{where}: {probe} must GET {path} on the http port, is {got}")
        sc = c.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False):
            problems.append(f"{where}: container must be non-root, read-only root, no privilege escalation")
        if spec.get("securityContext", {}).get("runAsUser") != int(APP_UID):
            problems.append(f"{where}: pod must run as uid {APP_UID}")
        if not c.get("resources", {}).get("limits") or not c.get("resources", {}).get("requests"):
            problems.append(f"{where}: resources need requests and limits")
        ann = pod["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") != str(s.http_port):
            problems.append(f"{where}: scrape annotations on the wrong port")
        env_names = {e["name"]: e for e in c.get("env", [])}
        db = env_names.get("GRODT_DATABASE__URL", {})
        if "secretKeyRef" not in db.get("valueFrom", {}):
            problems.append(f"{where}: GRODT_DATABASE__URL must come from a secretKeyRef")
        cm = by_kind.get("ConfigMap", {}).get(c["envFrom"][0]["configMapRef"]["name"], {})
        data = cm.get("data", {})
        if data.get("GRODT_GRPC__ADDR") != f"0.0.0.0:{s.grpc_port}" or data.get("GRODT_TELEMETRY__LOG_FORMAT") != "json":
            problems.append(f"{where}: ConfigMap does not set GRODT_GRPC__ADDR/GRODT_TELEMETRY__LOG_FORMAT as conventions say")
        if not data.get("GRODT_TELEMETRY__OTLP_ENDPOINT"):
            problems.append(f"{where}: no OTLP endpoint")
        if data.get("GRODT_ENV") != env:
            problems.append(f"{where}: GRODT_ENV is {data.get('GRODT_ENV')!r}")
    jobs = by_kind.get("Job", {})
    migrate = [j for j in jobs.values()
               if j["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-install,pre-upgrade"]
    if len(migrate) != 1 or migrate[0]["spec"]["template"]["spec"]["containers"][0].get("args") != ["migrate"]:
        problems.append(f"helm {env}: want one pre-install,pre-upgrade Job running `grodt migrate`")
    for kind in ("Service", "ConfigMap", "PodDisruptionBudget" if env != "dev" else None, "NetworkPolicy"):
        if not kind:
            continue
        owners = sorted(d["metadata"].get("labels", {}).get("app.kubernetes.io/name", "?")
                        for d in by_kind.get(kind, {}).values())
        if not set(BY_NAME) <= set(owners):
            problems.append(f"helm {env}: want a {kind} per service, have them for {owners}")
    scalers = list(by_kind.get("HorizontalPodAutoscaler", {}).values()) + list(by_kind.get("ScaledObject", {}).values())
    if len(scalers) != 1:
        problems.append(f"helm {env}: want exactly one worker autoscaler (HPA or ScaledObject), got {len(scalers)}")
    for so in by_kind.get("ScaledObject", {}).values():
        trig = so["spec"]["triggers"][0]
        md = trig.get("metadata", {})
        if trig.get("type") != "redis-streams" or not md.get("stream", "").endswith("grodt.backtest-jobs.v1") \
                or md.get("consumerGroup") != "backtest-worker" or "lagCount" not in md:
            problems.append(f"helm {env}: ScaledObject must scale on the backtest-worker group lag of grodt.backtest-jobs.v1")
        if not so["spec"]["scaleTargetRef"]["name"].endswith("backtest-worker"):
            problems.append(f"helm {env}: ScaledObject must target the backtest-worker Deployment")
    for sm in by_kind.get("ServiceMonitor", {}).values():
        ep = sm["spec"]["endpoints"][0]
        if ep.get("port") != "http" or ep.get("path") != "/metrics":
            problems.append(f"helm {env}: ServiceMonitor {sm['metadata']['name']} must scrape http /metrics")
    problems += check_autoscaling(env, docs)
    problems += check_single_writers(env, docs)
    problems += check_worker_grace(env, docs)
    problems += check_catalog_volume(env, docs)
    problems += check_scraping(env, docs)
    problems += check_helm_redis_config(env, docs)
    problems += check_smoke_test(env, docs)
    problems += check_chart_observability(env, docs)
    problems += check_helm_jaeger(env, docs)
    problems += security.check_helm_security(env, docs)
    return problems


def check_helm_jaeger(env: str, docs: list[dict]) -> list[str]:
    """The chart's own Jaeger (when rendered): probes, a memory limit and a
    bounded in-memory store (MEMORY_MAX_TRACES)."""
    dep = next((d for d in docs if d.get("kind") == "Deployment"
                and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "jaeger"), None)
    if dep is None:
        return []
    c = dep["spec"]["template"]["spec"]["containers"][0]
    problems = []
    if not c.get("readinessProbe") or not c.get("livenessProbe"):
        problems.append(f"helm {env}: jaeger needs readiness and liveness probes")
    if not c.get("resources", {}).get("limits", {}).get("memory"):
        problems.append(f"helm {env}: jaeger has no memory limit")
    env_vars = {e["name"]: e.get("value") for e in c.get("env", [])}
    if not str(env_vars.get("MEMORY_MAX_TRACES", "")).isdigit():
        problems.append(f"helm {env}: jaeger's in-memory store is unbounded (no MEMORY_MAX_TRACES)")
    return problems


def check_chart_observability(env: str, docs: list[dict], root: Path = ROOT) -> list[str]:
    """Where the Prometheus Operator scrapes (ServiceMonitors), the chart also
    ships deploy/'s rules as a PrometheusRule and deploy/'s dashboards as
    sidecar ConfigMaps, equal in content to the files Compose uses."""
    problems = []
    operator = any(d.get("kind") == "ServiceMonitor" for d in docs)
    want_groups = []
    for path in sorted((root / "deploy/prometheus/rules").glob("*.yml")):
        want_groups += (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", [])
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if operator and not rules:
        problems.append(f"helm {env}: ServiceMonitors but no PrometheusRule: the operator's Prometheus "
                        f"evaluates no GRODT alert")
    for r in rules:
        got = sorted(r["spec"].get("groups", []), key=lambda g: g["name"])
        if got != sorted(want_groups, key=lambda g: g["name"]):
            names = sorted(g["name"] for g in got)
            problems.append(f"helm {env}: PrometheusRule {r['metadata']['name']} groups {names} are not "
                            f"deploy/prometheus/rules (run scripts/deploy-tools/sync-chart-files.py)")
    want_dash = {p.name: json.loads(p.read_text(encoding="utf-8"))
                 for p in sorted((root / "deploy/grafana/dashboards").glob("*.json"))}
    got_dash = {}
    for d in docs:
        if d.get("kind") == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {}):
            for k, v in (d.get("data") or {}).items():
                got_dash[k] = json.loads(v)
    if operator and not got_dash:
        problems.append(f"helm {env}: no dashboard ConfigMaps (label grafana_dashboard) for the Grafana sidecar")
    elif got_dash and got_dash != want_dash:
        problems.append(f"helm {env}: dashboard ConfigMaps {sorted(got_dash)} differ from "
                        f"deploy/grafana/dashboards {sorted(want_dash)}")
    return problems


def check_smoke_test(env: str, docs: list[dict]) -> list[str]:
    """`helm test` has a hook pod that runs `grodt health` against every
    service through its Kubernetes Service, on that Service's gRPC port, for
    that service's gRPC health name (issue 13 part 2)."""
    pods = [d for d in docs if d.get("kind") == "Pod"
            and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if not pods:
        return [f"helm {env}: no `helm test` hook pod: a deploy is never smoke-tested"]
    checked = set()
    for pod in pods:
        for c in pod["spec"].get("containers", []):
            args = c.get("args") or []
            if args[:1] == ["health"] and len(args) >= 3:
                checked.add((args[1], args[2]))
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    problems = []
    for s in SERVICES:
        svc = next((v for v in services.values()
                    if v["spec"].get("selector", {}).get("app.kubernetes.io/name") == s.name), None)
        if svc is None:
            continue
        port = next((p["port"] for p in svc["spec"]["ports"] if p.get("name") == "grpc"), None)
        want = (f"{svc['metadata']['name']}:{port}", s.grpc_service)
        if want not in checked:
            problems.append(f"helm {env}: the smoke test does not run `grodt health {want[0]} {want[1]}`")
    return problems


def check_helm_redis_config(env: str, docs: list[dict]) -> list[str]:
    """The chart ships the redis.conf its Redis must run with: a maxmemory and
    noeviction (refuse writes at the limit; never evict stream entries)."""
    for d in docs:
        conf = (d.get("data") or {}).get("redis.conf") if d.get("kind") == "ConfigMap" else None
        if conf is None:
            continue
        settings = dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and " " in line.strip())
        if settings.get("maxmemory-policy", "").strip() != "noeviction" or not settings.get("maxmemory"):
            return [f"helm {env}: redis.conf in ConfigMap {d['metadata']['name']} must set maxmemory "
                    f"and maxmemory-policy noeviction, has {settings}"]
        return []
    return [f"helm {env}: no redis.conf ConfigMap with maxmemory and maxmemory-policy noeviction"]


# ---- resilience (issue 13 part 6) -------------------------------------------

# Single writers over a journal (docs/paper.md, docs/risk.md): two pods of one
# of these at once would both append to the journal and both publish.
SINGLE_WRITERS = ("strategy", "risk", "execution")


def _deployment(docs: list[dict], name: str) -> dict | None:
    return next((d for d in docs if d.get("kind") == "Deployment"
                 and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == name), None)


def check_single_writers(env: str, docs: list[dict]) -> list[str]:
    """strategy, risk and execution: exactly one replica, and a rollout that
    never runs the new pod next to the old one (Recreate, or maxSurge 0), and
    no autoscaler pointing at them."""
    problems = []
    for name in SINGLE_WRITERS:
        dep = _deployment(docs, name)
        if dep is None:
            continue  # "no Deployment" is reported by check_helm
        where = f"helm {env}: {name} (single writer)"
        if dep["spec"].get("replicas") != 1:
            problems.append(f"{where}: replicas must be 1, is {dep['spec'].get('replicas')!r}")
        strat = dep["spec"].get("strategy", {})
        surge = strat.get("rollingUpdate", {}).get("maxSurge", "25%")  # the Kubernetes default
        if strat.get("type") != "Recreate" and str(surge) not in ("0", "0%"):
            problems.append(f"{where}: rollout must be Recreate or maxSurge 0, is "
                            f"{strat.get('type', 'RollingUpdate')} with maxSurge {surge}")
        for d in docs:
            if d.get("kind") in ("HorizontalPodAutoscaler", "ScaledObject") \
                    and d["spec"].get("scaleTargetRef", {}).get("name") == dep["metadata"]["name"]:
                problems.append(f"{where}: autoscaled by {d['kind']} {d['metadata']['name']}")
    return problems


def check_worker_grace(env: str, docs: list[dict]) -> list[str]:
    """A backtest worker's termination grace is at least its job timeout: pod
    terminationGracePeriodSeconds >= the declared timeout
    (grodt.io/job-timeout-seconds), and the kit's shutdown grace (how long it
    lets in-flight calls run after SIGTERM) covers the timeout but ends before
    Kubernetes' SIGKILL. (Stream jobs are not drained by the worker yet; they
    are redelivered. That is the worker's code, not checked here.)"""
    dep = _deployment(docs, "backtest-worker")
    if dep is None:
        return []
    where = f"helm {env}: backtest-worker"
    pod = dep["spec"]["template"]
    timeout = pod["metadata"].get("annotations", {}).get("grodt.io/job-timeout-seconds")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if timeout is None or not str(timeout).isdigit():
        return [f"{where}: no job timeout declared (pod annotation grodt.io/job-timeout-seconds), "
                f"so nothing says the termination grace of {grace}s covers a job"]
    timeout = int(timeout)
    problems = []
    if grace < timeout:
        problems.append(f"{where}: terminationGracePeriodSeconds {grace} < job timeout {timeout}s")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    cms = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    data: dict = {}
    for src in c.get("envFrom", []):
        data.update(cms.get(src.get("configMapRef", {}).get("name"), {}))
    data.update({e["name"]: e.get("value") for e in c.get("env", [])})
    kit = data.get("GRODT_SERVER__SHUTDOWN_GRACE_MS")
    if kit is None or not str(kit).isdigit():
        problems.append(f"{where}: GRODT_SERVER__SHUTDOWN_GRACE_MS not set: the process would stop "
                        f"waiting for its job after the kit default")
    elif not timeout * 1000 <= int(kit) < grace * 1000:
        problems.append(f"{where}: shutdown grace {kit} ms must be >= the job timeout ({timeout}s) "
                        f"and < terminationGracePeriodSeconds ({grace}s)")
    return problems


CATALOG_SERVICES = ("market-data", "regime", "backtest-worker")


def check_catalog_volume(env: str, docs: list[dict]) -> list[str]:
    """market-data, regime and the workers mount the catalog from ONE
    PersistentVolumeClaim (an emptyDir per pod would give each pod its own,
    empty catalog)."""
    problems = []
    claims = {}
    for name in CATALOG_SERVICES:
        dep = _deployment(docs, name)
        if dep is None:
            continue
        spec = dep["spec"]["template"]["spec"]
        mounts = {m["name"] for m in spec["containers"][0].get("volumeMounts", [])
                  if m.get("mountPath") == "/var/lib/grodt/catalog"}
        vols = [v for v in spec.get("volumes", []) if v["name"] in mounts]
        if not vols:
            problems.append(f"helm {env}: {name} mounts no catalog volume at /var/lib/grodt/catalog")
            continue
        claim = vols[0].get("persistentVolumeClaim", {}).get("claimName")
        if claim is None:
            kind = next((k for k in vols[0] if k != "name"), "?")
            problems.append(f"helm {env}: {name} has the catalog on a {kind}, not on the shared claim: "
                            f"its pods do not see what market-data imported")
        claims[name] = claim
    if len({c for c in claims.values() if c}) > 1:
        problems.append(f"helm {env}: catalog pods mount different claims {claims}")
    return problems


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_scraping(env: str, docs: list[dict]) -> list[str]:
    """Every service's /metrics is scraped exactly once: by pod annotations or by
    one ServiceMonitor/PodMonitor, never by two (double counting in every sum()
    and rate() of the dashboards and alerts)."""
    problems = []
    services = [d for d in docs if d.get("kind") == "Service"]
    monitors = [d for d in docs if d.get("kind") in ("ServiceMonitor", "PodMonitor")]
    for s in SERVICES:
        dep = _deployment(docs, s.name)
        if dep is None:
            continue
        pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
        scrapers = []
        if dep["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true":
            scrapers.append("pod annotations")
        for m in monitors:
            sel = m["spec"].get("selector", {}).get("matchLabels", {})
            if m["kind"] == "PodMonitor":
                if _matches(sel, pod_labels):
                    scrapers.append(f"PodMonitor {m['metadata']['name']}")
                continue
            for svc in services:
                if _matches(sel, svc["metadata"].get("labels", {})) \
                        and _matches(svc["spec"].get("selector", {}), pod_labels):
                    scrapers.append(f"ServiceMonitor {m['metadata']['name']} (via Service {svc['metadata']['name']})")
        if len(scrapers) > 1:
            problems.append(f"helm {env}: {s.name} is scraped twice: {', '.join(scrapers)}")
        elif not scrapers:
            problems.append(f"helm {env}: {s.name} is not scraped (no annotations, no ServiceMonitor)")
    return problems


# ---- autoscaling: what KEDA watches == what a worker reads ---------------------

def code_constants(root: Path = ROOT) -> tuple[str, str]:
    """The jobs stream and the worker's consumer group, read from the Rust code."""
    topic = (root / "libs/proto/src/topic.rs").read_text(encoding="utf-8")
    worker = (root / "services/backtest-worker/src/worker.rs").read_text(encoding="utf-8")
    stream = re.search(r'BacktestJob\s*=>\s*"([^"]+)"', topic)
    group = re.search(r'pub const GROUP: &str = "([^"]+)";', worker)
    if not stream or not group:
        raise SystemExit("check-policy: cannot find Topic::BacktestJob or backtest-worker GROUP in the code")
    return stream.group(1), group.group(1)


def toml_key_prefix(env: str, root: Path = ROOT) -> str:
    """redis.key_prefix as libs/kit's layering gives it without env vars:
    built-in default "", then config/base.toml, then config/<env>.toml."""
    prefix = ""
    for name in ("base.toml", f"{env}.toml"):
        f = root / "config" / name
        if f.exists():
            prefix = tomllib.loads(f.read_text(encoding="utf-8")).get("redis", {}).get("key_prefix", prefix)
    return prefix


def worker_redis(env: str, docs: list[dict], root: Path = ROOT) -> tuple[str | None, dict | None, list[str]]:
    """(key prefix, GRODT_REDIS__URL source, problems) of the backtest-worker
    container as Kubernetes and libs/kit would give them: container env wins
    over envFrom ConfigMaps, which win over config/<env>.toml and base.toml."""
    problems = []
    dep = next((d for d in docs if d.get("kind") == "Deployment"
                and d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == "backtest-worker"), None)
    if dep is None:
        return None, None, [f"helm {env}: no backtest-worker Deployment"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    cms = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    merged: dict[str, dict] = {}
    for src in c.get("envFrom", []):
        name = src.get("configMapRef", {}).get("name")
        if name is None:
            problems.append(f"helm {env}: backtest-worker envFrom {src} cannot be resolved from the rendering")
            continue
        for k, v in cms.get(name, {}).items():
            merged[k] = {"name": k, "value": v}
    for e in c.get("env", []):
        merged[e["name"]] = e
    prefix_var = merged.get("GRODT_REDIS__KEY_PREFIX")
    if prefix_var is None:
        prefix = toml_key_prefix(env, root)
    elif "value" in prefix_var:
        prefix = prefix_var["value"]
    else:
        problems.append(f"helm {env}: backtest-worker GRODT_REDIS__KEY_PREFIX must be a plain value, is {prefix_var}")
        prefix = None
    return prefix, merged.get("GRODT_REDIS__URL"), problems


def check_autoscaling(env: str, docs: list[dict], root: Path = ROOT) -> list[str]:
    """KEDA's ScaledObject must watch the Redis key and consumer group a worker
    configured from the rendered env/ConfigMap reads (libs/bus RedisBus::key:
    prefix + stream, nothing in between), and authenticate with the Secret the
    services take GRODT_REDIS__URL from. The Helm prefix must also equal
    config/<env>.toml's, so Compose and Helm of one environment share keys."""
    stream, group = code_constants(root)
    prefix, url, problems = worker_redis(env, docs, root)
    if prefix is not None and prefix != toml_key_prefix(env, root):
        problems.append(f"helm {env}: workers use Redis key prefix {prefix!r}, "
                        f"config/{env}.toml says {toml_key_prefix(env, root)!r}")
    auths = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "TriggerAuthentication"}
    url_secret = (url or {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name")
    for so in (d for d in docs if d.get("kind") == "ScaledObject"):
        for trig in so["spec"].get("triggers", []):
            if trig.get("type") != "redis-streams":
                continue
            md = trig.get("metadata", {})
            if prefix is not None and md.get("stream") != prefix + stream:
                problems.append(f"helm {env}: KEDA watches stream {md.get('stream')!r}, "
                                f"workers read {prefix + stream!r}")
            if md.get("consumerGroup") != group:
                problems.append(f"helm {env}: KEDA watches consumer group {md.get('consumerGroup')!r}, "
                                f"workers use {group!r}")
            ref = (trig.get("authenticationRef") or {}).get("name")
            if ref is None:
                if url_secret:
                    problems.append(f"helm {env}: workers connect with Secret {url_secret!r} "
                                    f"but KEDA has no authenticationRef")
                continue
            ta = auths.get(ref)
            if ta is None:
                problems.append(f"helm {env}: KEDA authenticationRef {ref!r} is not rendered by the chart, "
                                f"so nothing ties it to the Secret the services use")
                if url_secret is None:
                    problems.append(f"helm {env}: KEDA authenticates to Redis ({ref!r}) "
                                    f"but the services connect with a plain GRODT_REDIS__URL")
                continue
            names = {r.get("name") for r in ta["spec"].get("secretTargetRef", [])}
            if url_secret is None:
                problems.append(f"helm {env}: KEDA authenticates to Redis (Secret {sorted(names)}) "
                                f"but the services connect with a plain GRODT_REDIS__URL")
            elif names != {url_secret}:
                problems.append(f"helm {env}: KEDA reads Redis credentials from {sorted(names)}, "
                                f"the services from {url_secret!r}")
    return problems


def check_alerts() -> list[str]:
    problems = []
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    sections = {m.group(1).lower() for m in re.finditer(r"^###\s+(\w+)\s*$", runbook, re.M)}
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert")
                if not name:
                    continue
                where = f"{path.relative_to(ROOT)}: {name}"
                if name.lower() not in sections:
                    problems.append(f"{where}: no '### {name}' section in docs/operations.md")
                url = rule.get("annotations", {}).get("runbook_url", "")
                if not url.endswith(f"docs/operations.md#{name.lower()}"):
                    problems.append(f"{where}: runbook_url {url!r} does not point to its section")
                if rule.get("labels", {}).get("severity") not in {"critical", "warning", "info"}:
                    problems.append(f"{where}: severity must be critical, warning or info")
    return problems


def check_workflows(cd_path: Path | None = None, ci_path: Path | None = None) -> list[str]:
    cd_path = cd_path or ROOT / ".github/workflows/cd.yml"
    ci_path = ci_path or ROOT / ".github/workflows/ci.yml"
    cd, ci = supply.load_workflow(cd_path), supply.load_workflow(ci_path)
    return (supply.check_cd(cd, cd_path.name) + supply.check_ci(ci, ci_path.name)
            + supply.check_action_pins({cd_path.name: cd, ci_path.name: ci}))


def image_refs(root: Path = ROOT, dockerfile: Path | None = None) -> dict[str, list[str]]:
    """Every base and third-party image reference: Dockerfile FROM lines, the
    Compose services, the chart's Jaeger, the CI service containers."""
    dockerfile = dockerfile or root / "deploy/docker/Dockerfile"
    compose = yaml.safe_load((root / "compose/docker-compose.yml").read_text(encoding="utf-8"))
    values = yaml.safe_load((root / "helm/grodt/values.yaml").read_text(encoding="utf-8"))
    ci = supply.load_workflow(root / ".github/workflows/ci.yml")
    services = sorted({svc["image"] for job in ci.get("jobs", {}).values()
                       for svc in (job.get("services") or {}).values() if svc.get("image")})
    services += supply.docker_run_images(ci)
    return {
        str(dockerfile.relative_to(root)) if dockerfile.is_relative_to(root) else dockerfile.name:
            supply.dockerfile_bases(dockerfile.read_text(encoding="utf-8")),
        "compose/docker-compose.yml": supply.compose_third_party_images(compose),
        "helm/grodt/values.yaml": [values["jaeger"]["image"]],
        ".github/workflows/ci.yml services and docker run": services,
    }


def check_images(root: Path = ROOT, cd_path: Path | None = None) -> list[str]:
    cd = supply.load_workflow(cd_path or root / ".github/workflows/cd.yml")
    return supply.check_image_defaults(
        cd, (root / "compose/docker-compose.yml").read_text(encoding="utf-8"),
        yaml.safe_load((root / "helm/grodt/values.yaml").read_text(encoding="utf-8")),
        yaml.safe_load((root / "helm/grodt/Chart.yaml").read_text(encoding="utf-8")),
        supply.cargo_version(root)) + supply.release_profile((root / "Cargo.toml").read_text(encoding="utf-8"))


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 64
    cmd = sys.argv[1]
    if cmd == "conventions" and len(sys.argv) == 2:
        problems = check_conventions()
    elif cmd == "alerts" and len(sys.argv) == 2:
        problems = check_alerts()
    elif cmd == "workflows" and len(sys.argv) in (2, 4):
        problems = check_workflows(*(Path(a) for a in sys.argv[2:4]))
    elif cmd == "pins" and len(sys.argv) == 2:
        problems, notes = supply.check_image_pins(image_refs(), supply.read_pending(ROOT / "deploy/pins-pending.txt"))
        problems += supply.check_dependabot(yaml.safe_load((ROOT / ".github/dependabot.yml").read_text(encoding="utf-8")))
        for n in notes:
            print(f"check-policy: {n}")
    elif cmd == "scrape-alerts" and len(sys.argv) == 2:
        problems = alerting.check_scrape_alerts(ROOT / "deploy/prometheus/prometheus.yml",
                                                ROOT / "deploy/prometheus/rules")
        problems += alerting.check_unique_targets(ROOT / "deploy/prometheus/prometheus.yml")
    elif cmd == "alertmanager" and len(sys.argv) in (2, 3):
        path = Path(sys.argv[2]) if len(sys.argv) == 3 else ROOT / "deploy/alertmanager/alertmanager.yml"
        config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
        problems = alerting.check_alertmanager(config, alerting.alert_rules(ROOT / "deploy/prometheus/rules"),
                                               alerting.expected_alerts(ROOT / "deploy/prometheus/tests"))
    elif cmd == "images" and len(sys.argv) == 2:
        problems = check_images()
    elif cmd == "compose" and len(sys.argv) == 4:
        problems = check_compose(sys.argv[2], json.loads(Path(sys.argv[3]).read_text(encoding="utf-8")))
    elif cmd == "compose-redis-tls" and len(sys.argv) == 4:
        config = json.loads(Path(sys.argv[3]).read_text(encoding="utf-8"))
        problems = check_compose(sys.argv[2], config) + security.check_compose_redis_tls(sys.argv[2], config)
    elif cmd == "helm" and len(sys.argv) == 4:
        docs = [d for d in yaml.safe_load_all(Path(sys.argv[3]).read_text(encoding="utf-8")) if d]
        problems = check_helm(sys.argv[2], docs)
    else:
        print(__doc__, file=sys.stderr)
        return 64
    for p in problems:
        print(f"check-policy: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
