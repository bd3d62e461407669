"""``receive``'s trace view: spans grouped by trace across batches and processes, shown once settled.

An exporter sends spans in batches as they end, and each process of a trace sends its own, so the
spans of one trace arrive in pieces. ``TraceViewer`` holds them by trace id and hands a trace on
once no span of it has arrived for ``settle`` seconds (at the latest ``max_wait`` after its first
span, and at exit). What it holds is bounded: past ``max_pending_spans`` the oldest traces are shown
early. Spans of a trace that was already shown come out as its continuation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from k8s_otel._attributes import SERVICE_NAME, UID
from k8s_otel.cli._receiver import ReceivedSpan

__all__ = ["DEFAULT_SETTLE", "SpanFilter", "TraceViewer", "parse_filter"]

_logger = logging.getLogger("k8s_otel.cli.viewer")

#: Seconds a trace must be quiet before it is shown.
DEFAULT_SETTLE = 2.0
_MAX_PENDING_SPANS = 100_000
_REMEMBERED_TRACES = 10_000


def parse_filter(text: str) -> tuple[str, str]:
    """``key=value`` as a pair; ``ValueError`` names what is wrong."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not key=value")
    return key.strip(), value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def _attribute_condition(key: str, value: str) -> Callable[[ReceivedSpan], bool]:
    def condition(span: ReceivedSpan) -> bool:
        return any(
            key in where and _as_text(where[key]) == value for where in (span.attributes, span.resource)
        )

    return condition


@dataclass(frozen=True)
class SpanFilter:
    """Which traces to show: each condition must hold for some span of the trace (all, when empty).

    ``uid`` matches the ``UID`` attribute, the AdmissionReview uid (kube-apiserver's webhook call span,
    the webhook's span; an object's uid is ``metadata.uid``); ``service`` matches ``service.name``; ``attributes`` match span or
    resource attributes by their text (``true``/``false`` for booleans, commas between list items).
    """

    uid: Optional[str] = None
    service: Optional[str] = None
    attributes: Sequence[tuple[str, str]] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return self.uid is None and self.service is None and not self.attributes

    def _conditions(self) -> list[Callable[[ReceivedSpan], bool]]:
        conditions: list[Callable[[ReceivedSpan], bool]] = []
        if self.uid is not None:
            uid = self.uid
            conditions.append(lambda s: _as_text(s.attributes.get(UID, "")) == uid)
        if self.service is not None:
            service = self.service
            conditions.append(lambda s: _as_text(s.resource.get(SERVICE_NAME, "")) == service)
        for key, value in self.attributes:
            conditions.append(_attribute_condition(key, value))
        return conditions

    def matches(self, spans: Iterable[ReceivedSpan]) -> bool:
        conditions = self._conditions()
        if not conditions:
            return True
        spans = list(spans)
        return all(any(condition(span) for span in spans) for condition in conditions)


@dataclass
class _Pending:
    spans: list[ReceivedSpan]
    first: float
    last: float


class TraceViewer:
    """Groups spans by trace and calls ``show(trace_id, spans, continued)`` once each trace settles.

    Thread-safe: ``add`` is called from the receiver's threads, ``show`` from the viewer's own
    thread (after ``start``) or from ``flush``. ``show`` is never called for a filtered-out trace.
    """

    def __init__(
        self,
        show: Callable[[str, list[ReceivedSpan], bool], None],
        *,
        settle: float = DEFAULT_SETTLE,
        max_wait: Optional[float] = None,
        span_filter: Optional[SpanFilter] = None,
        max_pending_spans: int = _MAX_PENDING_SPANS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._show = show
        self.settle = settle
        self.max_wait = max_wait if max_wait is not None else max(10 * settle, 30.0)
        self._filter = span_filter or SpanFilter()
        self._max_pending = max_pending_spans
        self._clock = clock
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._pending_count = 0
        # Traces already shown (True) or filtered out (False), so that late spans follow suit.
        self._decided: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._show_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, spans: Iterable[ReceivedSpan]) -> None:
        now = self._clock()
        overflow: list[tuple[str, _Pending]] = []
        with self._lock:
            for span in spans:
                pending = self._pending.get(span.trace_id)
                if pending is None:
                    pending = self._pending[span.trace_id] = _Pending([], now, now)
                pending.spans.append(span)
                pending.last = now
                self._pending_count += 1
            while self._pending_count > self._max_pending and len(self._pending) > 1:
                overflow.append(self._take(next(iter(self._pending))))
        for trace_id, pending in overflow:
            self._decide(trace_id, pending.spans)

    def _take(self, trace_id: str) -> tuple[str, _Pending]:
        pending = self._pending.pop(trace_id)
        self._pending_count -= len(pending.spans)
        return trace_id, pending

    def flush(self, everything: bool = False) -> int:
        """Show the traces that have settled (all of them with ``everything``); return how many."""
        now = self._clock()
        with self._lock:
            ready = [
                self._take(trace_id)
                for trace_id, pending in list(self._pending.items())
                if everything or now - pending.last >= self.settle or now - pending.first >= self.max_wait
            ]
        return sum(self._decide(trace_id, pending.spans) for trace_id, pending in ready)

    def _decide(self, trace_id: str, spans: list[ReceivedSpan]) -> bool:
        with self._show_lock:
            earlier = self._decided.get(trace_id)
            shown = earlier if earlier is not None else self._filter.matches(spans)
            self._decided[trace_id] = shown
            self._decided.move_to_end(trace_id)
            while len(self._decided) > _REMEMBERED_TRACES:
                self._decided.popitem(last=False)
            if shown:
                self._show(trace_id, spans, earlier is not None)
        return shown

    def pending(self) -> Mapping[str, int]:
        """Spans held per trace, not yet shown."""
        with self._lock:
            return {trace_id: len(p.spans) for trace_id, p in self._pending.items()}

    def start(self) -> TraceViewer:
        interval = min(max(self.settle / 4, 0.02), 0.25)

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.flush()
                except Exception:  # one trace that cannot be shown must not stop the others
                    _logger.exception("k8s-otel receive: a trace could not be shown")

        self._thread = threading.Thread(target=run, name="trace-viewer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and show everything still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush(everything=True)
