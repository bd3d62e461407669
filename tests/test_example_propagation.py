"""examples/propagation_service.py on real servers: one CLIENT span per call, context carried through."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "propagation_service.py"
sys.path.insert(0, str(EXAMPLE.parent))

import propagation_service  # noqa: E402

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_each_outgoing_call_is_one_client_span_and_carries_the_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with (
        propagation_service.serve(tracer, []) as downstream,
        propagation_service.serve(tracer, [f"{downstream}/a", f"{downstream}/b"]) as service,
    ):
        request = urllib.request.Request(
            f"{service}/work", headers={"traceparent": CALLER, "baggage": "tenant=a"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            seen = json.loads(answer.read())
    assert seen["traceparent"] == CALLER
    # What docs/propagation.md promises: outgoing calls carry the caller's baggage (and tracestate).
    assert [hop["baggage"] for hop in seen["downstream"]] == ["tenant=a", "tenant=a"]
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.name == "GET /work"]
    clients = [s for s in spans if s.kind.name == "CLIENT"]
    downstream_servers = [s for s in spans if s.name in ("GET /a", "GET /b")]
    assert len(clients) == 2 and len(downstream_servers) == 2
    assert server.parent is not None and server.parent.span_id == 0x00F067AA0BA902B7
    assert {s.context.trace_id for s in spans} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    for client in clients:
        assert client.parent is not None and client.parent.span_id == server.context.span_id
    # Each downstream request's traceparent named its client span as the parent: one hop each.
    assert sorted(s.parent.span_id for s in downstream_servers if s.parent) == sorted(
        c.context.span_id for c in clients
    )


def test_tracestate_goes_downstream_too() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with (
        propagation_service.serve(tracer, []) as downstream,
        propagation_service.serve(tracer, [f"{downstream}/a"]) as service,
    ):
        request = urllib.request.Request(
            f"{service}/work", headers={"traceparent": CALLER, "tracestate": "k8s=1,vendor@x=2"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            seen = json.loads(answer.read())
    assert seen["downstream"][0]["tracestate"] == "k8s=1,vendor@x=2"


def test_the_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [
        "the service saw",
        "downstream call 1 saw",
        "downstream call 2 saw",
    ]
    assert all('"baggage": "tenant=a"' in line for line in lines[:3])
    assert result.stdout.count("CLIENT") == 2
