"""kopf: per-call overhead of our instrumentation against the stock way to get the same spans.

Each group has three variants in one run on the same TracerProvider (spans dropped), so ratios.py
reports (ours - bare) / (stock - bare):

- kopf API calls (sampled): 50 ``kopf._cogs.clients.api.request`` GETs to the fake apiserver on
  127.0.0.1, through kopf's own aiohttp session; stock = ``AioHttpClientInstrumentor`` (contrib),
  which traces sessions created after it is on (the session is made per variant).
- handler invocations, sampled and unsampled (Kubernetes' default: no rate, no new trace sampled):
  200 calls of kopf's ``invoke_handler`` for a create handler; stock = the same span written by
  hand in the handler with ``tracer.start_as_current_span`` (what a user writes without us).
- the same, interleaved: bare, stock and ours in turn every round (``K8S_OTEL_BENCH_ROUNDS``,
  default 100), the ratio per round, its median and interquartile range printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import api, auth
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.actions import execution
from kopf._core.engines import indexing
from kopf._core.intents import causes, handlers
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from k8s_otel.instrumentation._kopf import KopfInstrumentor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_cluster import FakeCluster

CALLS = 50
INVOCATIONS = 200
PROVIDER = TracerProvider(sampler=ALWAYS_ON)
PROVIDER.add_span_processor(SpanProcessor())
# The Kubernetes default: no sampling rate set, so no new trace is sampled.
UNSAMPLED = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
LOGGER = logging.getLogger("bench")
RESOURCE = references.Resource("kopf.dev", "v1", "kopfexamples")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCluster]:
    with FakeCluster.with_pods("web-0").running() as fake:
        yield fake


def _instrument(implementation: str, stock: Any, provider: TracerProvider = PROVIDER) -> Any:
    active = {"stock": stock, "k8s_otel": KopfInstrumentor}.get(implementation)
    instance = active() if active else None
    if instance is not None:
        instance.instrument(tracer_provider=provider)
    return instance


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
def test_kopf_api_calls(benchmark: Any, server: FakeCluster, implementation: str) -> None:
    benchmark.group = f"kopf API calls, {CALLS} GET pod"
    instance = _instrument(implementation, AioHttpClientInstrumentor)
    loop = asyncio.new_event_loop()
    settings = kopf.OperatorSettings()

    async def make_context() -> auth.APIContext:
        return auth.APIContext(kopf.ConnectionInfo(server=server.host, insecure=True))

    context = loop.run_until_complete(make_context())

    async def calls() -> None:
        for _ in range(CALLS):
            response = await api.request(
                "get",
                "/api/v1/namespaces/default/pods/web-0",
                settings=settings,
                logger=LOGGER,
                context=context,
            )
            async with response:
                await response.json()

    try:
        benchmark(lambda: loop.run_until_complete(calls()))
    finally:
        loop.run_until_complete(context.session.close())
        loop.close()
        if instance is not None:
            instance.uninstrument()


def _cause() -> causes.ChangingCause:
    body = bodies.Body(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfExample",
            "metadata": {
                "name": "ex1",
                "namespace": "default",
                "uid": "6f1d3c2e-0000-4000-8000-000000000101",
            },
            "spec": {"size": 1},
        }
    )
    return causes.ChangingCause(
        logger=LOGGER,
        indices=indexing.OperatorIndexers().indices,
        memo=ephemera.AnyMemo(ephemera.Memo()),
        resource=RESOURCE,
        patch=patches.Patch(),
        body=body,
        initial=False,
        reason=causes.Reason.CREATE,
    )


def _handler(fn: Any) -> handlers.ChangingHandler:
    return handlers.ChangingHandler(
        fn=fn,
        id="created",
        param=None,
        errors=None,
        timeout=None,
        retries=None,
        backoff=None,
        selector=references.Selector("kopf.dev", "v1", "kopfexamples"),
        labels=None,
        annotations=None,
        when=None,
        field=None,
        value=None,
        old=None,
        new=None,
        field_needs_change=None,
        initial=None,
        deleted=None,
        requires_finalizer=None,
        reason=causes.Reason.CREATE,
    )


class _Invocations:
    """INVOCATIONS calls of kopf's invoke_handler for a plain handler and a hand-traced one."""

    def __init__(self, provider: TracerProvider) -> None:
        tracer = provider.get_tracer("bench")

        async def plain(**_: Any) -> None:
            pass

        async def by_hand(name: str, namespace: str, uid: str, retry: int, **_: Any) -> None:
            # What a user writes without k8s-otel to get the same span: the same name and keys.
            attributes = {
                "api-group": "kopf.dev",
                "api-version": "v1",
                "resource": "kopfexamples",
                "kopf.handler.type": "create",
                "kopf.handler.id": "created",
                "kopf.retry": retry,
                "kopf.event.type": "create",
                "name": name,
                "k8s.namespace.name": namespace,
                "UID": uid,
            }
            with tracer.start_as_current_span(
                "kopf.on.create kopfexamples.kopf.dev", attributes=attributes
            ) as span:
                span.set_attribute("kopf.outcome", "success")

        self.plain, self.by_hand = _handler(plain), _handler(by_hand)
        self.cause = _cause()
        self.settings = kopf.OperatorSettings()
        self.loop = asyncio.new_event_loop()
        self.now = datetime.datetime.now(datetime.timezone.utc)

    def run(self, handler: handlers.ChangingHandler) -> None:
        async def invocations() -> None:
            for _ in range(INVOCATIONS):
                await execution.invoke_handler(
                    handler=handler,
                    cause=self.cause,
                    retry=0,
                    started=self.now,
                    runtime=datetime.timedelta(0),
                    settings=self.settings,
                    lifecycle=None,
                    subrefs=set(),
                    extra_context=execution.no_extra_context,
                )

        self.loop.run_until_complete(invocations())

    def timed(self, handler: handlers.ChangingHandler) -> float:
        """Seconds per invocation, for one batch."""
        started = time.perf_counter()
        self.run(handler)
        return (time.perf_counter() - started) / INVOCATIONS


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_handler_invocations(benchmark: Any, implementation: str, sampled: bool) -> None:
    provider = PROVIDER if sampled else UNSAMPLED
    state = "" if sampled else ", unsampled"
    benchmark.group = f"kopf handler invocations, {INVOCATIONS} create handlers{state}"
    instance = _instrument(implementation, None, provider)
    calls = _Invocations(provider)
    handler = calls.by_hand if implementation == "stock" else calls.plain
    try:
        benchmark(lambda: calls.run(handler))
    finally:
        calls.loop.close()
        if instance is not None:
            instance.uninstrument()


ROUNDS = int(os.environ.get("K8S_OTEL_BENCH_ROUNDS", "100"))


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_handler_invocations_interleaved(benchmark: Any, sampled: bool) -> None:
    """bare, stock and ours in turn, every round (order rotated), so load on a shared machine hits
    all three alike; the ratio ours / stock is taken per round and reported as a median with its
    interquartile range."""
    provider = PROVIDER if sampled else UNSAMPLED
    benchmark.group = f"kopf handler, interleaved, {'sampled' if sampled else 'unsampled'}"
    calls = _Invocations(provider)
    instrumentor = KopfInstrumentor()
    times: dict[str, list[float]] = {"bare": [], "stock": [], "k8s_otel": []}

    def measure(name: str) -> None:
        if name == "k8s_otel":
            instrumentor.instrument(tracer_provider=provider)
            try:
                times[name].append(calls.timed(calls.plain))
            finally:
                instrumentor.uninstrument()
        else:
            times[name].append(calls.timed(calls.by_hand if name == "stock" else calls.plain))

    order = list(times)
    try:
        for _ in order:
            calls.run(calls.plain)  # warm-up
        for index in range(ROUNDS):
            for name in order[index % 3 :] + order[: index % 3]:
                measure(name)
        instrumentor.instrument(tracer_provider=provider)
        try:
            benchmark.pedantic(lambda: calls.run(calls.plain), rounds=5, iterations=1)
        finally:
            instrumentor.uninstrument()
    finally:
        calls.loop.close()
    ratios = sorted(ours / stock for ours, stock in zip(times["k8s_otel"], times["stock"]))
    quartiles = statistics.quantiles(ratios, n=4)
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    benchmark.extra_info.update(
        rounds=ROUNDS,
        median_us=medians,
        ratio_median=statistics.median(ratios),
        ratio_iqr=[quartiles[0], quartiles[2]],
    )
    print(
        f"\n| {benchmark.group} | {ROUNDS} | {medians['bare']:.1f} µs | {medians['stock']:.1f} µs | "
        f"{medians['k8s_otel']:.1f} µs | {statistics.median(ratios):.2f}x | {quartiles[0]:.2f}-{quartiles[2]:.2f}x |"
    )
