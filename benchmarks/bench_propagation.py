"""extract + inject: k8s_otel's helpers against the stock tracecontext + baggage composite, same run."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from k8s_otel import _propagation as propagation
from k8s_otel._conventions import span_name

STOCK = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
CASES = {
    "traceparent only": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    "with tracestate and baggage": {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "baggage": "tenant=team-a,request.priority=high",
    },
}
ROUNDS = 100


def _ours(headers: dict[str, str]) -> None:
    for _ in range(ROUNDS):
        carrier: dict[str, str] = {}
        propagation.inject(carrier, propagation.extract(headers))


def _stock(headers: dict[str, str]) -> None:
    for _ in range(ROUNDS):
        carrier: dict[str, str] = {}
        STOCK.inject(carrier, STOCK.extract(headers))


IMPLEMENTATIONS: dict[str, Callable[[dict[str, str]], None]] = {"k8s_otel": _ours, "stock": _stock}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_extract_and_inject(benchmark: Any, implementation: str, case: str) -> None:
    benchmark.group = f"extract + inject, {case}, {ROUNDS} rounds"
    benchmark(IMPLEMENTATIONS[implementation], CASES[case])


def test_extract_from_values_fast_path(benchmark: Any) -> None:
    """What the webhook wrappers call: the three values already read from the request."""
    benchmark.group = "webhook fast path: extract_from_values, traceparent only, 100 rounds"
    value = CASES["traceparent only"]["traceparent"]

    def run() -> None:
        for _ in range(ROUNDS):
            propagation.extract_from_values(value, None, None)

    benchmark(run)


def test_span_name(benchmark: Any) -> None:
    benchmark.group = "span_name, 100 distinct pod names"
    paths = [f"/api/v1/namespaces/default/pods/web-{i}" for i in range(100)]

    def run() -> None:
        span_name.cache_clear()
        for path in paths:
            span_name("GET", path)

    benchmark(run)
