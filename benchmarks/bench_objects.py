"""KEP-5915 objects: inject/extract per call and the reconcile span, against the stock way to do the same.

1000 calls per measurement; the same TracerProvider (spans dropped) for every variant:

- inject: ``inject_context(obj)`` in a current span, against the stock ``TraceContextTextMapPropagator``
  with a hand-written setter that prefixes the annotation key (what a user writes without us);
  bare = the loop alone.
- extract: ``extract_context(obj)`` against the stock propagator with a prefixing getter.
- reconcile span, sampled and unsampled: ``with reconcile_span(name, obj)`` against the same span
  written by hand (stock extract, a Link, ``start_as_current_span`` with the identity attributes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from k8s_otel.objects import TRACEPARENT_ANNOTATION, extract_context, inject_context, reconcile_span

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved

ROUNDS = int(os.environ.get("K8S_OTEL_BENCH_ROUNDS", "200"))

CALLS = 1000
PROVIDER = TracerProvider(sampler=ALWAYS_ON)
PROVIDER.add_span_processor(SpanProcessor())
UNSAMPLED = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
STOCK = TraceContextTextMapPropagator()
PREFIX = "tracing.k8s.io/"


class _PrefixSetter(Setter[dict[str, Any]]):
    def set(self, carrier: dict[str, Any], key: str, value: str) -> None:
        carrier.setdefault("metadata", {}).setdefault("annotations", {})[PREFIX + key] = value


class _PrefixGetter(Getter[Mapping[str, Any]]):
    def get(self, carrier: Mapping[str, Any], key: str) -> Optional[list[str]]:
        value = ((carrier.get("metadata") or {}).get("annotations") or {}).get(PREFIX + key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return []


SETTER, GETTER = _PrefixSetter(), _PrefixGetter()


def _object() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "uid": "6f1d3c2e-0000-4000-8000-000000000101",
            "annotations": {
                TRACEPARENT_ANNOTATION: "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"
            },
        },
        "spec": {"replicas": 1},
    }


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
def test_inject(benchmark: Any, implementation: str) -> None:
    benchmark.group = f"objects: inject, {CALLS} calls"
    obj = _object()

    def calls() -> None:
        with PROVIDER.get_tracer("bench").start_as_current_span("write"):
            if implementation == "k8s_otel":
                for _ in range(CALLS):
                    inject_context(obj)
            elif implementation == "stock":
                for _ in range(CALLS):
                    STOCK.inject(obj, setter=SETTER)
            else:
                for _ in range(CALLS):
                    pass

    benchmark(calls)
    assert obj["metadata"]["annotations"][TRACEPARENT_ANNOTATION]


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
def test_extract(benchmark: Any, implementation: str) -> None:
    benchmark.group = f"objects: extract, {CALLS} calls"
    obj = _object()

    def calls() -> None:
        if implementation == "k8s_otel":
            for _ in range(CALLS):
                extract_context(obj)
        elif implementation == "stock":
            for _ in range(CALLS):
                STOCK.extract(obj, getter=GETTER)
        else:
            for _ in range(CALLS):
                pass

    benchmark(calls)


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_reconcile_span(benchmark: Any, implementation: str, sampled: bool) -> None:
    provider = PROVIDER if sampled else UNSAMPLED
    benchmark.group = f"objects: reconcile span, {CALLS} calls{'' if sampled else ', unsampled'}"
    tracer = provider.get_tracer("bench")
    obj = _object()

    def by_hand() -> None:
        stored = trace.get_current_span(STOCK.extract(obj, getter=GETTER)).get_span_context()
        metadata = obj["metadata"]
        attributes = {
            "api-group": "apps",
            "api-version": "v1",
            "name": metadata["name"],
            "k8s.namespace.name": metadata["namespace"],
            "UID": metadata["uid"],
            "k8s.deployment.name": metadata["name"],
            "k8s.deployment.uid": metadata["uid"],
        }
        with tracer.start_as_current_span(
            "reconcile Deployment",
            context=Context(),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(stored)] if stored.is_valid else None,
        ):
            pass

    def calls() -> None:
        if implementation == "k8s_otel":
            for _ in range(CALLS):
                with reconcile_span("reconcile Deployment", obj, tracer_provider=provider):
                    pass
        elif implementation == "stock":
            for _ in range(CALLS):
                by_hand()
        else:
            for _ in range(CALLS):
                pass

    benchmark(calls)


def _inject_variants() -> dict[str, Any]:
    obj = _object()

    def ours() -> None:
        for _ in range(CALLS):
            inject_context(obj)

    def stock() -> None:
        for _ in range(CALLS):
            STOCK.inject(obj, setter=SETTER)

    def bare() -> None:
        for _ in range(CALLS):
            pass

    return {"bare": bare, "stock": stock, "k8s_otel": ours}


def _extract_variants() -> dict[str, Any]:
    obj = _object()

    def ours() -> None:
        for _ in range(CALLS):
            extract_context(obj)

    def stock() -> None:
        for _ in range(CALLS):
            STOCK.extract(obj, getter=GETTER)

    def bare() -> None:
        for _ in range(CALLS):
            pass

    return {"bare": bare, "stock": stock, "k8s_otel": ours}


def _reconcile_variants(provider: TracerProvider) -> dict[str, Any]:
    tracer = provider.get_tracer("bench")
    obj = _object()

    def by_hand() -> None:
        stored = trace.get_current_span(STOCK.extract(obj, getter=GETTER)).get_span_context()
        metadata = obj["metadata"]
        attributes = {
            "api-group": "apps",
            "api-version": "v1",
            "name": metadata["name"],
            "k8s.namespace.name": metadata["namespace"],
            "UID": metadata["uid"],
            "k8s.deployment.name": metadata["name"],
            "k8s.deployment.uid": metadata["uid"],
        }
        with tracer.start_as_current_span(
            "reconcile Deployment",
            context=Context(),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(stored)] if stored.is_valid else None,
        ):
            pass

    def ours() -> None:
        for _ in range(CALLS):
            with reconcile_span("reconcile Deployment", obj, tracer_provider=provider):
                pass

    def stock() -> None:
        for _ in range(CALLS):
            by_hand()

    def bare() -> None:
        for _ in range(CALLS):
            pass

    return {"bare": bare, "stock": stock, "k8s_otel": ours}


@pytest.mark.parametrize("case", ["inject", "extract", "reconcile sampled", "reconcile unsampled"])
def test_interleaved(benchmark: Any, case: str) -> None:
    """bare, stock and ours in turn every round; the table row is printed (run with -s)."""
    if case == "inject":
        with PROVIDER.get_tracer("bench").start_as_current_span("write"):
            variants = _inject_variants()
            result = interleaved(variants, ROUNDS)
    elif case == "extract":
        variants = _extract_variants()
        result = interleaved(variants, ROUNDS)
    else:
        variants = _reconcile_variants(PROVIDER if case == "reconcile sampled" else UNSAMPLED)
        result = interleaved(variants, ROUNDS)
    benchmark.group = f"objects, interleaved: {case}"
    benchmark.extra_info.update(rounds=result.rounds, ratio=result.ratio, overhead=result.overhead)
    benchmark.pedantic(variants["k8s_otel"], rounds=3, iterations=1)
    print("\n" + result.row(f"{case}, per call", per=CALLS))
