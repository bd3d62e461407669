"""The queue's memory is bounded, and what each queued span costs (tracemalloc)."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from k8s_otel._export import CountingBatchSpanProcessor, ExportLedger
from k8s_otel.webhook import admission_handler

QUEUE = 512
BATCH = 128
TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "web",
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:team-a:deployer"},
        "object": {"kind": "Deployment"},
        "dryRun": False,
    },
}


class Held(SpanExporter):
    """Never finishes an export until released: everything stays queued."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        return SpanExportResult.SUCCESS


def queued_bytes_per_span(processor_type: str, spans: int, webhook: bool) -> float:
    """Bytes traced per span once ``spans`` spans sit in the processor's queue."""
    exporter = Held()
    settings = {"max_queue_size": QUEUE, "max_export_batch_size": BATCH, "schedule_delay_millis": 60_000}
    processor: BatchSpanProcessor = (
        CountingBatchSpanProcessor(exporter, ExportLedger(), **settings)
        if processor_type == "ours"
        else BatchSpanProcessor(exporter, **settings)
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("memory")

    @admission_handler(tracer_provider=provider, webhook_type="validating")
    def validate(review: dict[str, object]) -> dict[str, object]:
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": REVIEW["request"]["uid"], "allowed": True},
        }  # type: ignore[index]

    def one() -> None:
        if webhook:
            validate(REVIEW, headers=TRACEPARENT)
        else:
            with tracer.start_as_current_span("plain"):
                pass

    one()  # warm caches (tracer, detectors) outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(spans):
            one()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        exporter.release.set()
        processor.shutdown()  # type: ignore[no-untyped-call]
    return (after - before) / spans


def test_our_processor_adds_nothing_per_queued_span() -> None:
    stock = queued_bytes_per_span("stock", 400, webhook=True)
    ours = queued_bytes_per_span("ours", 400, webhook=True)
    print(f"webhook span queued: stock {stock:.0f} B, ours {ours:.0f} B")
    assert ours < stock * 1.03 + 64


def test_a_queued_webhook_span_stays_within_the_documented_bound() -> None:
    plain = queued_bytes_per_span("ours", 400, webhook=False)
    webhook = queued_bytes_per_span("ours", 400, webhook=True)
    print(f"queued: plain span {plain:.0f} B, webhook span {webhook:.0f} B")
    assert plain < webhook < 6 * 1024  # docs/export.md: about 4.5 KB, so 2,560 spans ~ 11.5 MB at most


def test_a_full_queue_takes_no_more_memory() -> None:
    # The queue plus the batch being exported hold QUEUE + BATCH spans; what comes after them is
    # dropped (and counted) and costs next to nothing.
    held = QUEUE + BATCH
    full = queued_bytes_per_span("ours", held, webhook=True) * held
    thrice = queued_bytes_per_span("ours", 3 * held, webhook=True) * 3 * held
    print(f"{held} spans held: {full / 1024:.0f} KiB; after {3 * held} spans: {thrice / 1024:.0f} KiB")
    assert thrice < full * 1.1
