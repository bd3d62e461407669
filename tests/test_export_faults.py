"""Every span accounted for, through a collector that is down, refusing, blackholed, slow or restarted.

Real gRPC against the real receiver (``fault_collector``), with scaled-down timings: 0.5 s per
export attempt, a 50 ms schedule delay and a 6 s retry window (``OTEL_BSP_EXPORT_TIMEOUT``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import k8s_otel
from fault_collector import Blackhole, FaultCollector
from k8s_otel._export import (
    WHERE_TO_LOOK,
    CountingBatchSpanProcessor,
    ExportLedger,
    ExportStatistics,
    RetryingExporter,
    describe,
)
from k8s_otel._wiring import TracingHandle

TOKEN = "canary-t0ken-4f1e"


@pytest.fixture(autouse=True)
def fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "6000")


@pytest.fixture(autouse=True)
def bounded_threads_and_rss() -> Iterator[None]:
    """Every scenario ends with no threads and no memory left behind (set up first, checked last)."""
    threads, rss = threading.active_count(), rss_kib()
    yield
    deadline = time.monotonic() + 5
    while threading.active_count() > threads + 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the receiver's and the shutdown's threads finish
    assert threading.active_count() <= threads + 2, [t.name for t in threading.enumerate()]
    assert rss_kib() - rss < 16 * 1024


@pytest.fixture
def collector() -> Iterator[FaultCollector]:
    made = FaultCollector()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def handles() -> Iterator[list[TracingHandle]]:
    made: list[TracingHandle] = []
    yield made
    for handle in made:
        handle.shutdown(1.0)


def make(handles: list[TracingHandle], endpoint: str, **kwargs: object) -> TracingHandle:
    handle = k8s_otel.configure(
        endpoint=endpoint,
        sampling_rate_per_million=1_000_000,
        headers={"authorization": f"Bearer {TOKEN}"},
        install=False,
        **kwargs,  # type: ignore[arg-type]
    )
    handles.append(handle)
    return handle


def emit(handle: TracingHandle, count: int, prefix: str) -> None:
    tracer = handle.tracer_provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"{prefix}{index:04d}"):
            pass


def settled(handle: TracingHandle, timeout: float = 15.0) -> ExportStatistics:
    """Statistics once nothing is pending (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = handle.statistics()
        if stats.pending == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def conserved(stats: ExportStatistics) -> bool:
    return stats.exported + stats.dropped + stats.failed + stats.pending == stats.ended


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4


def test_a_restart_loses_nothing_and_the_failed_batch_goes_first(
    collector: FaultCollector, handles: list[TracingHandle]
) -> None:
    handle = make(handles, collector.endpoint)
    emit(handle, 5, "warm")
    assert handle.force_flush(5)
    restarted = collector.restart(outage=2.5)
    emit(handle, 30, "a")
    time.sleep(0.5)  # the batch of "a" has failed at least once by now
    emit(handle, 30, "b")
    restarted.join()
    stats = settled(handle)
    assert (stats.ended, stats.exported, stats.dropped, stats.failed, stats.pending) == (65, 65, 0, 0, 0)
    names = [span.name for span in collector.receiver.spans() if not span.name.startswith("warm")]
    assert (
        sorted(set(names))
        == sorted(names)
        == [f"a{i:04d}" for i in range(30)] + [f"b{i:04d}" for i in range(30)]
    )  # each once, and the retried batch before anything newer
    assert names == sorted(names)


def test_an_outage_longer_than_the_window_is_counted_and_summarised(
    collector: FaultCollector,
    handles: list[TracingHandle],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "3000")
    collector.down()
    handle = make(handles, collector.endpoint)
    caplog.set_level(logging.WARNING, logger="k8s_otel.export")
    emit(handle, 12, "lost")
    started = time.monotonic()
    stats = settled(handle, timeout=15)
    gave_up_after = time.monotonic() - started
    assert (stats.ended, stats.exported, stats.failed, stats.pending) == (12, 0, 12, 0)
    assert conserved(stats)
    assert stats.last_error == "UNAVAILABLE"
    assert 2.5 < gave_up_after < 3.0 + 0.5 + 3.0  # the window, plus one attempt's timeout and slack
    collector.up()
    emit(handle, 3, "after")
    stats = settled(handle)
    assert (stats.exported, stats.failed) == (3, 12)
    assert handle.shutdown(2)
    summaries = [r.getMessage() for r in caplog.records if "spans lost" in r.getMessage()]
    assert len(summaries) == 2  # one while losing (at most one a minute), one at shutdown
    assert "12 failed" in summaries[0] and "UNAVAILABLE" in summaries[0]
    assert summaries[1].startswith("k8s_otel: at shutdown")
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_a_full_queue_drops_the_newest_and_counts_them(
    collector: FaultCollector, handles: list[TracingHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "40")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10")
    restarted = collector.restart(outage=2.0)
    handle = make(handles, collector.endpoint)
    emit(handle, 10, "first")
    time.sleep(0.3)  # the first batch is being retried: the queue fills behind it
    emit(handle, 100, "more")
    during = handle.statistics()
    assert conserved(during) or during.pending > 0
    restarted.join()
    stats = settled(handle)
    assert stats.ended == 110
    assert stats.dropped == 60  # 10 in flight, 40 queued, the newest 60 refused
    assert (stats.exported, stats.failed, stats.pending) == (50, 0, 0)
    names = sorted(span.name for span in collector.receiver.spans())
    assert names == sorted([f"first{i:04d}" for i in range(10)] + [f"more{i:04d}" for i in range(40)])


def test_a_refusing_collector_is_retried_and_a_non_retryable_answer_is_not(
    collector: FaultCollector, handles: list[TracingHandle]
) -> None:
    handle = make(handles, collector.endpoint)
    collector.refusing(grpc.StatusCode.RESOURCE_EXHAUSTED)
    emit(handle, 7, "busy")
    time.sleep(1.0)
    collector.refusing(None)  # type: ignore[arg-type]
    stats = settled(handle)
    assert (stats.exported, stats.failed) == (7, 0)
    collector.refusing(grpc.StatusCode.INVALID_ARGUMENT)
    started = time.monotonic()
    emit(handle, 4, "bad")
    stats = settled(handle)
    assert time.monotonic() - started < 3.0  # failed at once, not retried for the window
    assert (stats.ended, stats.exported, stats.failed) == (11, 7, 4)
    assert stats.last_error == "INVALID_ARGUMENT"
    assert conserved(stats)


def test_a_slow_collector_gets_everything(collector: FaultCollector, handles: list[TracingHandle]) -> None:
    collector.slow(0.3)
    handle = make(handles, collector.endpoint)
    for round_ in range(4):
        emit(handle, 25, f"r{round_}-")
    stats = settled(handle)
    assert (stats.ended, stats.exported, stats.dropped, stats.failed, stats.pending) == (100, 100, 0, 0, 0)
    assert len(collector.receiver.spans()) == 100


def test_flushes_against_a_blackhole_share_one_thread(handles: list[TracingHandle]) -> None:
    blackhole = Blackhole()
    try:
        handle = make(handles, blackhole.endpoint)
        emit(handle, 20, "x")
        assert not handle.force_flush(0.05)
        threads, rss = threading.active_count(), rss_kib()
        results = [handle.force_flush(0.02) for _ in range(100)]
        assert not any(results)
        assert threading.active_count() <= threads + 1  # one flush at a time, not one thread per call
        assert rss_kib() - rss < 4096
        stats = handle.statistics()
        assert (stats.ended, stats.pending) == (20, 20)
        assert conserved(stats)
        assert not handle.shutdown(0.5)
        stats = handle.statistics()
        assert (stats.failed, stats.pending) == (20, 0)  # given up at shutdown: counted, not vanished
        assert conserved(stats)
    finally:
        blackhole.stop()


def test_the_loss_summary_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="k8s_otel.export")
    ledger = ExportLedger(report_interval=0.3)
    for _ in range(50):
        ledger.record_dropped()
    assert len(caplog.records) == 1
    time.sleep(0.35)
    ledger.start(5)
    ledger.record_error("UNAVAILABLE")
    ledger.settle(5, exported=False)
    assert len(caplog.records) == 2
    assert "55 spans lost" in caplog.records[1].getMessage()
    assert "5 failed" in caplog.records[1].getMessage()
    ledger.maybe_report()  # nothing new: nothing logged
    assert len(caplog.records) == 2
    stats = ledger.statistics()
    assert (stats.ended, stats.dropped, stats.failed, stats.lost) == (50, 50, 5, 55)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["end", "drop", "export", "fail"]), st.integers(min_value=1, max_value=600)
        ),
        max_size=60,
    ),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_ledger_conserves_every_span(operations: list[tuple[str, int]], close: bool) -> None:
    """Whatever happens, in whatever order: exported + dropped + failed + pending == ended."""
    ledger = ExportLedger(report_interval=3600)
    queue: list[int] = []
    ledger.watch_queue(lambda: len(queue))
    for operation, count in operations:
        if operation == "end":
            for _ in range(count):
                ledger.record_ended()
                queue.append(1)
        elif operation == "drop":
            ledger.record_dropped()
        elif queue:  # a batch leaves the queue, is exported, then settles
            batch = min(count, len(queue))
            del queue[:batch]
            ledger.start(batch)
            assert conserved(ledger.statistics())
            ledger.settle(batch, exported=operation == "export")
        assert conserved(ledger.statistics())
    if close:
        ledger.close()
        stats = ledger.statistics()
        assert stats.pending == 0
        assert conserved(stats)


def test_describe_and_where_to_look_name_every_count() -> None:
    assert describe(ExportStatistics(ended=3, exported=3)) == (
        "ended 3, exported 3, dropped 0 (queue full), failed 0 (gave up after retries), pending 0"
    )
    lossy = describe(
        ExportStatistics(ended=5, failed=2, exported=3, last_error="UNAVAILABLE", losing_since=0.0)
    )
    assert lossy.endswith("; losing since 1970-01-01T00:00:00Z, last error UNAVAILABLE")
    for word in (
        "statistics()",
        "dropped",
        "failed",
        "pending",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "k8s_otel.export",
    ):
        assert word in WHERE_TO_LOOK


def test_an_exporter_that_raises_fails_the_batch_at_once() -> None:
    class Broken(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            raise ValueError("cannot encode")

    ledger = ExportLedger()
    exporter = RetryingExporter(Broken(), ledger, retry_window=30.0)
    started = time.monotonic()
    assert exporter.export([object(), object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert time.monotonic() - started < 1.0
    stats = ledger.statistics()
    assert (stats.failed, stats.pending, stats.last_error) == (2, 0, "ValueError")


def test_a_logging_handler_that_makes_spans_cannot_deadlock_the_loss_summary() -> None:
    """The summary is logged outside the processor's lock: a handler that traces its records
    (log-to-span bridges do) ends a span from inside the log call."""
    release = threading.Event()

    class Held(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(10)
            return SpanExportResult.SUCCESS

    ledger = ExportLedger(report_interval=0.0)
    processor = CountingBatchSpanProcessor(
        Held(), ledger, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=10
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")

    class Tracing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with tracer.start_as_current_span("log"):
                pass

    handler = Tracing()
    logger = logging.getLogger("k8s_otel.export")
    logger.addHandler(handler)
    done = threading.Event()

    def spans() -> None:
        for _ in range(20):
            with tracer.start_as_current_span("x"):
                pass
        done.set()

    try:
        threading.Thread(target=spans, daemon=True).start()
        assert done.wait(5)  # no deadlock
    finally:
        logger.removeHandler(handler)
        release.set()
        processor.shutdown()  # type: ignore[no-untyped-call]
    assert ledger.statistics().dropped > 0
