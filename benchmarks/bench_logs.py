"""One log record made in a span: k8s_otel's record factory against the contrib logging instrumentation's.

Both factories wrap the plain ``logging.LogRecord``; ``bare`` is that plain factory, for the
overhead ratio. Ours also sets ``trace_id``/``span_id`` and reads the service name per provider.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from k8s_otel._logs import disable_log_correlation, enable_log_correlation

RECORDS = 1000
Factory = Callable[..., logging.LogRecord]


def _contrib_factory() -> Factory:
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(
        set_logging_format=False, inject_trace_context=True, enable_log_auto_instrumentation=False
    )
    try:
        return logging.getLogRecordFactory()
    finally:
        instrumentor.uninstrument()


def _our_factory() -> Factory:
    enable_log_correlation()
    try:
        return logging.getLogRecordFactory()
    finally:
        disable_log_correlation()


FACTORIES: dict[str, Callable[[], Factory]] = {
    "bare": lambda: logging.LogRecord,
    "stock": _contrib_factory,
    "k8s_otel": _our_factory,
}


@pytest.mark.parametrize("implementation", list(FACTORIES))
def test_record_in_a_span(benchmark: Any, implementation: str) -> None:
    factory = FACTORIES[implementation]()
    assert factory is logging.LogRecord or factory is not logging.LogRecord
    tracer = TracerProvider().get_tracer("bench")

    def run() -> None:
        for _ in range(RECORDS):
            factory("app", logging.INFO, __file__, 1, "reconciled %s", ("ex1",), None)

    with tracer.start_as_current_span("work"):
        record = factory("app", logging.INFO, __file__, 1, "x", (), None)
        if implementation != "bare":
            assert record.otelTraceID != "0"  # type: ignore[attr-defined]  # the span was seen
        benchmark.group = f"log record in a span, {RECORDS} records"
        benchmark(run)
