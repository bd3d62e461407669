"""Shared pieces of the export benchmarks: the receiver process, spans, and the two pipelines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

ATTRIBUTES: dict[str, Any] = {
    "k8s.namespace.name": "team-a",
    "k8s.resource.name": "deployments",
    "http.request.method": "POST",
    "url.path": "/validate",
    "http.response.status_code": 200,
    "k8s.admission.operation": "CREATE",
    "k8s.admission.uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "server.address": "webhook.team-a.svc",
    "k8s.admission.allowed": True,
}
"""A webhook SERVER span's worth of attributes (nine, strings mostly)."""

POD: dict[str, Any] = {
    "service.name": "my-webhook",
    "k8s.cluster.name": "prod",
    "k8s.namespace.name": "team-a",
    "k8s.node.name": "node-1",
    "k8s.pod.name": "my-webhook-7d4b9c-x2x9z",
    "k8s.pod.uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "k8s.deployment.name": "my-webhook",
    "k8s.container.name": "webhook",
    "host.name": "node-1",
    "process.pid": 1,
}
"""What a pod's resource holds besides the SDK's own attributes (the downward API and detectors)."""


class Receiver:
    """``_export_receiver.py`` in its own process (so that decoding does not share our GIL)."""

    def __init__(self, *, flapping: bool = False) -> None:
        script = str(Path(__file__).with_name("_export_receiver.py"))
        args = [sys.executable, script] + (["--flapping"] if flapping else [])
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def finished_spans(count: int, resource: Resource) -> list[ReadableSpan]:
    keep = _Keep()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("bench")
    for _ in range(count):
        with tracer.start_as_current_span("validate", attributes=ATTRIBUTES):
            pass
    return keep.spans


def stock_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=True)


def our_exporter(endpoint: str) -> SpanExporter:
    """The chain ``configure()`` builds: retrying, fork-safe, healing."""
    from k8s_otel._export import ExportLedger, RetryingExporter
    from k8s_otel._exporter import build_exporter
    from k8s_otel._settings import resolve_settings

    exporter, _ = build_exporter(resolve_settings(endpoint=endpoint))
    assert exporter is not None
    return RetryingExporter(exporter, ExportLedger(), retry_window=30.0)


def stock_pipeline(endpoint: str) -> tuple[TracerProvider, BatchSpanProcessor]:
    provider = TracerProvider(resource=Resource.create(POD), shutdown_on_exit=False)
    processor = BatchSpanProcessor(stock_exporter(endpoint))
    provider.add_span_processor(processor)
    return provider, processor


def our_pipeline(endpoint: str) -> tuple[TracerProvider, Any]:
    import k8s_otel

    handle = k8s_otel.configure(
        endpoint=endpoint, sampling_rate_per_million=1_000_000, resource=POD, install=False
    )
    provider = handle.tracer_provider
    assert isinstance(provider, TracerProvider)
    return provider, handle
