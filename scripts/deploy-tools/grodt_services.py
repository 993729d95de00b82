"""The seven GRODT services as docs/conventions.md defines them.

One table for the generators and checkers under scripts/deploy-tools, so
ports, metric prefixes and gRPC names are written down once outside the
conventions page. check-deploy compares this table with docs/conventions.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Service:
    name: str  # market-data
    grpc_service: str  # grodt.v1.MarketDataService
    grpc_port: int
    http_port: int
    # Redis streams this service consumes (DESIGN.md), for lag panels/alerts.
    consumes: tuple[str, ...]

    @property
    def binary(self) -> str:
        return f"grodt-{self.name}"

    @property
    def prefix(self) -> str:
        return "grodt_" + self.name.replace("-", "_") + "_"

    @property
    def job(self) -> str:
        return f"grodt-{self.name}"

    @property
    def env_prefix(self) -> str:
        return self.name.upper().replace("-", "_")


SERVICES: tuple[Service, ...] = (
    Service("market-data", "grodt.v1.MarketDataService", 50051, 9101, ()),
    Service("regime", "grodt.v1.RegimeService", 50052, 9102, ("grodt.bars.v1",)),
    Service(
        "strategy",
        "grodt.v1.StrategyService",
        50053,
        9103,
        ("grodt.bars.v1", "grodt.regimes.v1", "grodt.fills.v1"),
    ),
    Service(
        "risk",
        "grodt.v1.RiskService",
        50054,
        9104,
        ("grodt.order-intents.v1", "grodt.fills.v1", "grodt.bars.v1"),
    ),
    Service(
        "execution",
        "grodt.v1.ExecutionService",
        50055,
        9105,
        ("grodt.orders.v1", "grodt.bars.v1"),
    ),
    Service(
        "backtest-worker",
        "grodt.v1.BacktestService",
        50056,
        9106,
        ("grodt.backtest-jobs.v1",),
    ),
    Service(
        "optimizer",
        "grodt.v1.OptimizerService",
        50057,
        9107,
        ("grodt.backtest-results.v1",),
    ),
)


def check_against_conventions(conventions: Path) -> list[str]:
    """Differences between SERVICES and the services table of conventions.md."""
    rows = {}
    for line in conventions.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"grodt\.v1\.\w+Service", cells[2]):
            rows[cells[0]] = cells
    problems = []
    for s in SERVICES:
        row = rows.pop(s.name, None)
        if row is None:
            problems.append(f"{s.name}: missing from {conventions}")
            continue
        want = [s.name, s.binary, s.grpc_service, str(s.grpc_port), str(s.http_port), s.prefix]
        if row != want:
            problems.append(f"{s.name}: conventions say {row}, deploy tools say {want}")
    problems += [f"{name}: in {conventions} but unknown to deploy tools" for name in rows]
    return problems
