"""No context leak, no misparented span: the handler decorator from many threads and tasks, and the
middleware under a threaded server, each request's spans under its own parent."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from k8s_otel._sampling import PerMillionSampler
from k8s_otel._trust import SampledParentBudget, TrustPolicy
from k8s_otel.webhook import admission_handler
from webhook_support import review

POLICY = TrustPolicy("trust", budget=SampledParentBudget(math.inf))


def _recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=PerMillionSampler(1_000_000))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _parent(index: int) -> str:
    return f"00-{index + 1:032x}-{index + 1:016x}-01"


def test_fifty_threads_through_the_handler_decorator() -> None:
    provider, memory = _recording()
    tracer = provider.get_tracer("policy")
    barrier = threading.Barrier(50)
    leaks: list[object] = []

    @admission_handler(tracer_provider=provider, webhook_type="validating", trust=POLICY)
    def validate(document: dict[str, Any]) -> dict[str, Any]:
        barrier.wait(10)  # all fifty inside their spans at once
        with tracer.start_as_current_span("policy check", attributes={"for": document["request"]["uid"]}):
            pass
        uid = document["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda i: _one(validate, i, leaks), range(50)))
    spans = memory.get_finished_spans()
    servers = {s.context.span_id: s for s in spans if s.name == "POST"}
    checks = [s for s in spans if s.name == "policy check"]
    assert len(servers) == 50 and len(checks) == 50 and leaks == []
    for span in servers.values():
        index = int(span.attributes["UID"].split("-")[1])  # type: ignore[index, union-attr]
        assert span.parent is not None and span.parent.span_id == index + 1
        assert span.context.trace_id == index + 1
    for check in checks:
        server = servers[check.parent.span_id]  # type: ignore[union-attr]
        assert check.attributes["for"] == server.attributes["UID"]  # type: ignore[index]


def _one(validate: Any, index: int, leaks: list[object]) -> None:
    validate(review(uid=f"uid-{index}"), headers={"traceparent": _parent(index)})
    if trace.get_current_span().get_span_context().is_valid:
        leaks.append(index)


def test_fifty_tasks_through_an_async_handler() -> None:
    provider, memory = _recording()
    tracer = provider.get_tracer("policy")

    @admission_handler(tracer_provider=provider, trust=POLICY)
    async def validate(document: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.001)
        with tracer.start_as_current_span("policy check", attributes={"for": document["request"]["uid"]}):
            await asyncio.sleep(0.001)
        uid = document["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    async def main() -> list[bool]:
        async def one(index: int) -> bool:
            await validate(review(uid=f"uid-{index}"), headers={"traceparent": _parent(index)})
            return trace.get_current_span().get_span_context().is_valid

        return await asyncio.gather(*(one(i) for i in range(50)))

    assert asyncio.run(main()) == [False] * 50
    spans = memory.get_finished_spans()
    servers = {s.context.span_id: s for s in spans if s.name == "POST"}
    assert len(servers) == 50
    for span in servers.values():
        index = int(span.attributes["UID"].split("-")[1])  # type: ignore[index, union-attr]
        assert span.parent is not None and span.parent.span_id == index + 1
    for check in (s for s in spans if s.name == "policy check"):
        assert check.attributes["for"] == servers[check.parent.span_id].attributes["UID"]  # type: ignore[index, union-attr]
