"""Export that retries a failed batch, gives up fast when delivery is impossible, and counts every span.

The SDK's ``BatchSpanProcessor`` stays as it is; two extensions sit around it:

- ``CountingBatchSpanProcessor`` counts each span that ends (sampled) and each one refused because the
  queue is full. When full, it drops the *new* span, as Go's batch span processor does (the SDK's
  deque would silently push out the oldest one, which nothing counts).
- ``RetryingExporter`` wraps the OTLP exporter. A batch whose export failed is tried again, with
  backoff, before anything newer is sent (the processor's worker waits in ``export``), until
  ``retry_window`` seconds have passed since its first failure; then it counts as failed. At
  shutdown it stops retrying as soon as the exporter reports that the collector cannot be reached
  (connection refused, DNS failure: the channel is in transient failure and nothing is in flight).

Memory stays bounded: the processor's queue (``OTEL_BSP_MAX_QUEUE_SIZE`` spans) plus the one batch
being retried (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans) and its encoded request.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from k8s_otel._errors import exception_type

__all__ = [
    "WHERE_TO_LOOK",
    "CountingBatchSpanProcessor",
    "ExportFailure",
    "ExportLedger",
    "ExportStatistics",
    "RetryingExporter",
    "StableResource",
    "describe",
]

_logger = logging.getLogger("k8s_otel.export")

LOSS_REPORT_INTERVAL = 60.0
"""Seconds between two loss summaries in the log, at most."""

_reporting = threading.local()

_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 4.0


@dataclass(frozen=True)
class ExportStatistics:
    """Where every span that ended went. At rest: ``exported + dropped + failed + pending == ended``.

    ``dropped``: refused because the queue was full (or tracing was shut down). ``failed``: given up
    after the retries. ``pending``: queued or being exported. ``last_error`` is a gRPC status or
    exception type name, never a message (messages may quote headers).
    """

    ended: int = 0
    exported: int = 0
    dropped: int = 0
    failed: int = 0
    pending: int = 0
    last_error: Optional[str] = None
    losing_since: Optional[float] = None
    """Wall-clock time (``time.time()``) of the first loss, or None."""

    @property
    def lost(self) -> int:
        return self.dropped + self.failed


WHERE_TO_LOOK = (
    "Spans that never arrive are counted in the process that made them: handle.statistics() gives "
    "ended, exported, dropped (queue full), failed (export gave up after retries) and pending; the "
    "k8s_otel.export logger writes a loss summary at most once a minute while spans are lost, and one "
    "at shutdown. 'dropped' means the queue (OTEL_BSP_MAX_QUEUE_SIZE) was full: the collector is slow "
    "or down, or the app makes spans faster than one export thread sends them. 'failed' with "
    "UNAVAILABLE means the collector could not be reached for OTEL_BSP_EXPORT_TIMEOUT; any other "
    "status is the collector's answer (see its otelcol_receiver_refused_spans metric)."
)
"""What ``k8s-otel doctor`` prints about export losses (the CLI cannot see another process's counts)."""


def describe(stats: ExportStatistics) -> str:
    """One line for people: the counts, and the last error if spans were lost."""
    line = (
        f"ended {stats.ended}, exported {stats.exported}, dropped {stats.dropped} (queue full), "
        f"failed {stats.failed} (gave up after retries), pending {stats.pending}"
    )
    if stats.lost:
        when = time.time() if stats.losing_since is None else stats.losing_since
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        line += f"; losing since {since}, last error {stats.last_error or 'none'}"
    return line


@dataclass(frozen=True)
class ExportFailure:
    """Why the last export attempt failed: a status name, and what it means for retrying."""

    error: str
    retryable: bool = True
    unreachable: bool = False
    """The collector cannot be reached at all (refused, DNS failure): retrying at shutdown is futile."""
    too_large: bool = False
    """The request was larger than the receiver takes (gRPC's 4 MiB default): split it, never resend it."""


class StableResource(Resource):
    """A Resource that hashes itself once.

    The OTLP encoder groups each batch's spans by resource, hashing the resource of every span, and
    ``Resource.__hash__`` serialises all its attributes to JSON each time: with a pod's dozen
    attributes that is about a sixth of the encoder's time per span. A resource never changes once
    made (a merge returns a new one), so the hash is kept. Equality is the SDK's. A merge gives a
    StableResource too: the provider's refresh after a fork merges into its resource.
    """

    _stable_hash: Optional[int] = None

    def __hash__(self) -> int:
        value = self._stable_hash
        if value is None:
            value = self._stable_hash = super().__hash__()
        return value

    def merge(self, other: Resource) -> Resource:
        return StableResource.of(super().merge(other))

    @classmethod
    def of(cls, resource: Resource) -> StableResource:
        return cls(dict(resource.attributes), resource.schema_url)


class FailureReporting(Protocol):
    """An exporter that can say why its last export failed (the gRPC one in ``_grpc_export``)."""

    def last_failure(self) -> Optional[ExportFailure]: ...

    def in_flight(self) -> bool: ...


class ExportLedger:
    """Thread-safe counters for one pipeline, and the rate-limited loss summary."""

    def __init__(self, report_interval: float = LOSS_REPORT_INTERVAL) -> None:
        self._lock = threading.Lock()
        self._report_interval = report_interval
        self._queue_length: Callable[[], int] = lambda: 0
        self._reset()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:  # the SDK empties the child's queue: start counting afresh
                ledger = ref()
                if ledger is not None:
                    ledger._lock = threading.Lock()
                    ledger._reset()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset(self) -> None:
        self.ended = self.exported = self.dropped = self.failed = self.in_flight = 0
        self.closed = False
        self.last_error: Optional[str] = None
        self.losing_since: Optional[float] = None
        self._reported_lost = 0
        self._last_report = -float("inf")

    def watch_queue(self, queue_length: Callable[[], int]) -> None:
        self._queue_length = queue_length

    def record_ended(self) -> None:
        """Called under the processor's emit lock (the only writer of ``ended``): no lock of its own."""
        self.ended += 1

    def record_dropped(self, *, report: bool = True) -> None:
        with self._lock:
            self.ended += 1
            self.dropped += 1
            self._lost_locked()
        if report:
            self.maybe_report()

    def record_error(self, error: str) -> None:
        with self._lock:
            self.last_error = error

    def start(self, count: int) -> None:
        with self._lock:
            self.in_flight += count

    def settle(self, count: int, exported: Union[bool, int]) -> None:
        """``count`` spans left flight: all exported (True), none (False), or that many of them."""
        delivered = (count if exported else 0) if isinstance(exported, bool) else max(0, min(count, exported))
        with self._lock:
            if self.closed:
                return  # counted as failed when the pipeline was closed
            self.in_flight -= count
            self.exported += delivered
            if delivered < count:
                self.failed += count - delivered
                self._lost_locked()
        self.maybe_report()

    def close(self) -> None:
        """Shutdown is over: what is still queued or in flight will never be delivered."""
        with self._lock:
            if self.closed:
                return
            stranded = self.in_flight + self._queue_length()
            self.failed += stranded
            self.in_flight = 0
            self.closed = True
            if stranded:
                self._lost_locked()

    def _lost_locked(self) -> None:
        if self.losing_since is None:
            self.losing_since = time.time()

    def statistics(self) -> ExportStatistics:
        with self._lock:
            pending = 0 if self.closed else self.in_flight + self._queue_length()
            return ExportStatistics(
                ended=self.ended,
                exported=self.exported,
                dropped=self.dropped,
                failed=self.failed,
                pending=pending,
                last_error=self.last_error,
                losing_since=self.losing_since,
            )

    def maybe_report(self, *, final: bool = False) -> None:
        """Log a loss summary if spans were lost since the last one and the interval has passed."""
        if getattr(_reporting, "active", False):
            return  # a logging handler that makes spans, which are dropped in turn: no recursion
        _reporting.active = True
        try:
            self._report(final)
        finally:
            _reporting.active = False

    def _report(self, final: bool) -> None:
        now = time.monotonic()
        with self._lock:
            lost = self.dropped + self.failed
            new = lost - self._reported_lost
            if not final and (new <= 0 or now - self._last_report < self._report_interval):
                return
            if final and lost == 0:
                return
            self._reported_lost = lost
            self._last_report = now
        stats = self.statistics()
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stats.losing_since or time.time()))
        _logger.warning(
            "k8s_otel: %s%d spans lost since %s (%d new): %d dropped (queue full), %d failed (export gave "
            "up after retries); last error: %s; ended %d, exported %d, pending %d",
            "at shutdown: " if final else "",
            lost,
            since,
            new,
            stats.dropped,
            stats.failed,
            stats.last_error or "none",
            stats.ended,
            stats.exported,
            stats.pending,
        )


def _queue_of(processor: BatchSpanProcessor) -> Optional[tuple[Any, Any]]:
    """The SDK batch processor's (internal) batcher and its deque, if this SDK has them."""
    batcher = getattr(processor, "_batch_processor", None)
    queue = getattr(batcher, "_queue", None)
    if batcher is None or queue is None or not hasattr(batcher, "_max_queue_size"):
        return None
    return batcher, queue


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's BatchSpanProcessor, counting what ends and dropping the newest span when full."""

    def __init__(self, exporter: SpanExporter, ledger: ExportLedger, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self.ledger = ledger
        self._emit_lock = threading.Lock()
        self._internals = _queue_of(self)
        if self._internals is not None:
            queue = self._internals[1]
            ledger.watch_queue(lambda: len(queue))
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                processor = ref()
                if processor is not None:
                    processor._emit_lock = threading.Lock()
                    # The SDK may replace its deque in the child; follow it.
                    processor._internals = _queue_of(processor)
                    if processor._internals is not None:
                        child_queue = processor._internals[1]
                        processor.ledger.watch_queue(lambda: len(child_queue))

            os.register_at_fork(after_in_child=after_in_child)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if not (context and context.trace_flags.sampled):
            return
        internals = self._internals
        ledger = self.ledger
        if internals is None:  # an SDK whose internals we do not know: count what we can
            with self._emit_lock:
                ledger.record_ended()
            super().on_end(span)
            return
        batcher, queue = internals
        with self._emit_lock:  # the worker only takes spans out, so the check below cannot go stale
            dropped = len(queue) >= batcher._max_queue_size or batcher._shutdown
            if dropped:
                ledger.record_dropped(report=False)
            else:
                ledger.ended += 1  # record_ended(), inlined: this is every span's path
                batcher.emit(span)
        if dropped:
            ledger.maybe_report()  # outside the lock: a logging handler may itself end a span


MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 64 * 1024
"""gRPC's default receive limit (the Collector's ``max_recv_msg_size_mib: 4``), less room for the
framing: an export request is split before it would pass it."""


class RetryingExporter(SpanExporter):
    """Retries each failed batch until ``retry_window`` seconds after its first failure, and counts.

    ``inner`` is any SpanExporter; when it also reports its failures (``last_failure()``), a
    non-retryable status fails the batch at once and an unreachable collector ends the shutdown
    drain at once.
    """

    def __init__(
        self,
        inner: SpanExporter,
        ledger: ExportLedger,
        *,
        retry_window: float,
    ) -> None:
        self.inner = inner
        self.ledger = ledger
        self.retry_window = retry_window
        self._wake = threading.Event()
        self._drain_deadline: Optional[float] = None
        self._unreachable = False
        self._shutdown = False

    def _reporter(self) -> Optional[FailureReporting]:
        inner = self.inner
        return inner if callable(getattr(inner, "last_failure", None)) else None  # type: ignore[return-value]

    # Shutdown drain -------------------------------------------------------------------------------

    def unreachable(self) -> bool:
        """The last attempt found no collector to talk to (refused, DNS failure), and none is running."""
        reporter = self._reporter()
        if reporter is None:
            return False
        failure = reporter.last_failure()
        return failure is not None and failure.unreachable and not reporter.in_flight()

    def begin_drain(self, deadline: float) -> None:
        """Shutdown has begun: retry only until ``deadline`` (monotonic), and not at all if unreachable."""
        self._drain_deadline = deadline
        if self.unreachable():
            self._unreachable = True
        # Interrupt the stock exporter's own backoff sleep, so that each inner export makes one
        # attempt from now on; our loop decides whether another one is worth it.
        interrupt = getattr(self.inner, "interrupt_backoff", None)
        if callable(interrupt):
            interrupt()
        self._wake.set()

    @property
    def draining(self) -> bool:
        return self._drain_deadline is not None

    # SpanExporter ---------------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        self.ledger.start(count)
        delivered = 0
        try:
            delivered = self._deliver_splitting(spans)
        except Exception as error:  # never into the worker: it would lose the count
            self.ledger.record_error(exception_type(error))
            _logger.debug("k8s_otel: export raised %s", exception_type(error))
        finally:
            self.ledger.settle(count, delivered)
        return SpanExportResult.SUCCESS if delivered == count else SpanExportResult.FAILURE

    def _deliver_splitting(self, spans: Sequence[ReadableSpan]) -> int:
        """Deliver ``spans``; a request too large for the receiver is sent in halves, so that one
        huge span costs itself and never its batch-mates. Returns how many were delivered."""
        pending: list[Sequence[ReadableSpan]] = [spans]
        delivered = 0
        measure = getattr(self.inner, "request_size", None)
        while pending:
            part = pending.pop()
            if callable(measure) and measure(part) > MAX_REQUEST_BYTES:
                if len(part) > 1:  # split before sending: the receiver would refuse it whole
                    middle = len(part) // 2
                    pending.extend((part[middle:], part[:middle]))
                else:  # one span over the limit alone: it is lost (counted), its batch-mates are not
                    self.ledger.record_error("span larger than the receiver's message limit")
                continue
            self._too_large = False
            if self._deliver(part):
                delivered += len(part)
            elif self._too_large and len(part) > 1:
                middle = len(part) // 2
                pending.extend((part[middle:], part[:middle]))
        return delivered

    _too_large = False

    def _deliver(self, spans: Sequence[ReadableSpan]) -> bool:
        first_failure: Optional[float] = None
        backoff = _FIRST_BACKOFF
        while True:
            if self._shutdown or self._unreachable:
                return False
            failure: Optional[ExportFailure] = None
            try:
                result = self.inner.export(spans)
            except Exception as error:  # the batch cannot be encoded or sent: trying again will not help
                result = SpanExportResult.FAILURE
                failure = ExportFailure(exception_type(error), retryable=False)
            if result is SpanExportResult.SUCCESS:
                return True
            if failure is None:
                reporter = self._reporter()
                failure = reporter.last_failure() if reporter is not None else None
                failure = failure or ExportFailure("FAILURE")
            self.ledger.record_error(failure.error)
            if failure.too_large:
                self._too_large = True
                return False
            if not failure.retryable:
                return False
            if self.draining and failure.unreachable:
                self._unreachable = True  # the rest of the queue fails at once, too
                return False
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
            give_up_at = first_failure + self.retry_window
            if self._drain_deadline is not None:
                give_up_at = min(give_up_at, self._drain_deadline)
            if now >= give_up_at:
                return False
            # The last attempt is made at give_up_at itself: an outage shorter than the window is survived.
            delay = min(backoff * random.uniform(0.8, 1.2), give_up_at - now)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            if self._wake.wait(delay):
                self._wake.clear()
            if self._shutdown:
                return False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Stop retrying and close the inner exporter (which cancels an RPC in flight)."""
        self._shutdown = True
        self._wake.set()
        self.inner.shutdown()
