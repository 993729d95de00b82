#!/usr/bin/env python3
"""A local OTLP/gRPC trace receiver, and a check that spans form one trace.

  otlp-sink.py serve --out SPANS.jsonl [--listen 127.0.0.1:0] [--port-file F]
      Accepts opentelemetry.proto.collector.trace.v1.TraceService/Export (what
      the services' OTLP exporters send to GRODT_TELEMETRY__OTLP_ENDPOINT) and
      appends one JSON line per span: trace_id, span_id, parent_span_id, name,
      kind, service (resource attribute service.name). Runs until SIGTERM.

  otlp-sink.py check SPANS.jsonl --services grodt-strategy grodt-risk ...
      Exit 0 when one trace holds spans of every named service, with a single
      root and every other span's parent inside the trace: the context went
      across the processes (gRPC metadata or an event's `traceparent`).
      Prints that trace as a tree. Exit 1 otherwise, saying what is missing.

This is the receiving half of issue 5's tracing test: start the sink, run the
services with GRODT_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:<port>, make one
request that crosses services through gRPC and the event bus, then `check`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import defaultdict
from concurrent import futures
from pathlib import Path


def serve(listen: str, out: Path, port_file: Path | None = None):
    """Start the receiver; returns (grpc server, bound port)."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    lock = threading.Lock()

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 (gRPC method name)
            lines = []
            for rs in request.resource_spans:
                service = next(
                    (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                    "",
                )
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        lines.append(json.dumps({
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "service": service,
                        }))
            with lock, out.open("a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    if port_file:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.rename(port_file)
    return server, port


def check(spans_file: Path, services: list[str]) -> tuple[bool, str]:
    spans = [json.loads(line) for line in spans_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    traces: dict[str, list[dict]] = defaultdict(list)
    for s in spans:
        traces[s["trace_id"]].append(s)
    best, best_missing = None, None
    for trace_id, members in traces.items():
        have = {s["service"] for s in members}
        missing = [svc for svc in services if svc not in have]
        if best is None or len(missing) < len(best_missing):
            best, best_missing = trace_id, missing
        if missing:
            continue
        ids = {s["span_id"] for s in members}
        roots = [s for s in members if not s["parent_span_id"]]
        orphans = [s for s in members if s["parent_span_id"] and s["parent_span_id"] not in ids]
        if len(roots) == 1 and not orphans:
            return True, render_tree(trace_id, members)
    if not spans:
        return False, f"{spans_file}: no spans received"
    if best_missing:
        return False, (f"no trace has spans of all of {services}; the closest, {best}, "
                       f"lacks {best_missing} ({len(traces)} traces, {len(spans)} spans)")
    return False, "a trace has spans of every service but is broken (several roots or a parent outside it)"


def render_tree(trace_id: str, members: list[dict]) -> str:
    children = defaultdict(list)
    for s in members:
        children[s["parent_span_id"]].append(s)
    lines = [f"trace {trace_id}"]

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["name"]):
            lines.append(f"{'  ' * depth}- {s['service']}: {s['name']}")
            walk(s["span_id"], depth + 1)

    walk("", 1)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", default="127.0.0.1:0")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--port-file", type=Path)
    c = sub.add_parser("check")
    c.add_argument("spans", type=Path)
    c.add_argument("--services", nargs="+", required=True)
    args = ap.parse_args()
    if args.cmd == "serve":
        server, _ = serve(args.listen, args.out, args.port_file)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        server.stop(grace=2).wait()
        return 0
    ok, text = check(args.spans, args.services)
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
