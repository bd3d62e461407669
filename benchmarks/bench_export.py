"""Export cost: ours (retrying, healing OTLP/gRPC exporter; counting processor) against the stock
OTLPSpanExporter and BatchSpanProcessor, same run, a receiver in its own process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from k8s_otel._export import CountingBatchSpanProcessor, ExportLedger, StableResource

sys.path.insert(0, str(Path(__file__).parent))
from _export_common import POD, Receiver, finished_spans, our_exporter, stock_exporter

EXPORTERS: dict[str, Callable[[str], SpanExporter]] = {"k8s_otel": our_exporter, "stock": stock_exporter}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        made.stop()


RESOURCES: dict[str, Callable[[], Resource]] = {
    "k8s_otel": lambda: StableResource.of(Resource.create(POD)),  # what configure() gives the provider
    "stock": lambda: Resource.create(POD),
}


@pytest.mark.parametrize("implementation", list(EXPORTERS))
def test_export_a_batch(benchmark: Any, implementation: str, receiver: Receiver) -> None:
    benchmark.group = (
        "export: 512 webhook spans of a pod (14 resource attributes), encoded and sent over gRPC"
    )
    batch = finished_spans(512, RESOURCES[implementation]())
    exporter = EXPORTERS[implementation](receiver.endpoint)
    try:
        assert exporter.export(batch) is SpanExportResult.SUCCESS
        benchmark.pedantic(exporter.export, args=(batch,), rounds=60, iterations=1, warmup_rounds=3)
    finally:
        exporter.shutdown()


class _Null(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


PROCESSORS: dict[str, Callable[[], BatchSpanProcessor]] = {
    "k8s_otel": lambda: CountingBatchSpanProcessor(_Null(), ExportLedger()),
    "stock": lambda: BatchSpanProcessor(_Null()),
}


@pytest.mark.parametrize("implementation", list(PROCESSORS))
def test_end_1000_spans(benchmark: Any, implementation: str) -> None:
    benchmark.group = "span start + end through the batch processor, 1000 spans"
    processor = PROCESSORS[implementation]()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench")

    def run() -> None:
        for _ in range(1000):
            with tracer.start_as_current_span("validate"):
                pass

    try:
        benchmark.pedantic(run, rounds=60, iterations=1, warmup_rounds=3)
    finally:
        provider.shutdown()
