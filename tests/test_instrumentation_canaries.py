"""No error text reaches a span or a log line: API error bodies and handler exceptions, with canaries.

A real kopf operator against the fake cluster, both instrumentations on, every span exported over
OTLP/gRPC to the real receiver, and every log record at DEBUG collected. The canary is in an
``ApiException``'s response body (kubernetes_asyncio), in a kopf ``APIError``'s body (a failed
PATCH of kopf's), and in a handler's exception that quotes a Secret's data.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes_asyncio
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fake_cluster import FakeCluster
from k8s_otel.cli._receiver import OTLPReceiver
from k8s_otel.instrumentation._kopf import KopfInstrumentor
from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
from test_instrumentation_kopf import EXAMPLES, Operator, example, wait_for

CANARY = "canary-4f1e9b7d2c"
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "data": {"password": base64.b64encode(CANARY.encode()).decode()},
}
# Loggers of the libraries themselves that print what they were given, by their own design and
# at the user's choice of level: kopf logs a failed handler's exception (and posts it as an Event
# when posting is on), and kubernetes_asyncio logs every response body at DEBUG. Not ours to change.
THEIR_OWN = ("kopf", "kubernetes_asyncio.client.rest")


@pytest.fixture
def traced(otlp_receiver: OTLPReceiver) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter: SpanExporter = OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    memory = InMemorySpanExporter()  # only to wait for the operator's spans
    provider.add_span_processor(SimpleSpanProcessor(memory))
    kopf_instrumentor, client_instrumentor = KopfInstrumentor(), KubernetesClientInstrumentor()
    kopf_instrumentor.instrument(tracer_provider=provider)
    client_instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, memory
    finally:
        kopf_instrumentor.uninstrument()
        client_instrumentor.uninstrument()
        provider.shutdown()


def test_no_canary_in_any_span_or_log_record(
    traced: tuple[TracerProvider, InMemorySpanExporter],
    otlp_receiver: OTLPReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    provider, memory = traced
    cluster = FakeCluster()
    with cluster.running():
        # kube-apiserver answers with a Status whose message echoes the canary.
        cluster.failures.append(("GET", "/pods/p1", 500, f"etcd: value {CANARY} rejected"))
        operator = Operator(cluster, memory)
        operator.noop(kopf.on.update, id="updated")

        @kopf.on.create(*EXAMPLES, registry=operator.registry, id="reads", errors=kopf.ErrorsMode.IGNORED)
        async def reads(patch: kopf.Patch, **_: Any) -> None:
            configuration = kubernetes_asyncio.client.Configuration(host=cluster.host)
            async with kubernetes_asyncio.client.ApiClient(configuration) as client:
                api = kubernetes_asyncio.client.CoreV1Api(client)
                await api.read_namespaced_pod("p1", "default")  # raises ApiException(500)

        @kopf.on.create(*EXAMPLES, registry=operator.registry, id="parses", errors=kopf.ErrorsMode.IGNORED)
        def parses(patch: kopf.Patch, **_: Any) -> None:
            value = base64.b64decode(SECRET["data"]["password"]).decode()  # type: ignore[index]
            patch.status["parsed"] = int(value)  # ValueError quoting the Secret's data

        with operator.running():
            cluster.create("kopfexamples", example("ex1"))
            wait_for(lambda: len(operator.spans("kopf.on.create kopfexamples.kopf.dev")) >= 2)
            wait_for(
                lambda: "last-handled" in str(cluster.field("kopfexamples", "default", "ex1", "metadata"))
            )
            # kopf's own PATCH after the update handler is refused, echoing the canary: an APIError.
            cluster.failures.append(
                ("PATCH", "/kopfexamples/ex1", 422, f"spec.secret: Invalid value: {CANARY}")
            )
            cluster.update("kopfexamples", "default", "ex1", {"spec": {"size": 2}})
            wait_for(lambda: not cluster.failures)
            wait_for(
                lambda: [
                    s
                    for s in memory.get_finished_spans()
                    if s.status.status_code.name == "ERROR" and s.name.startswith("PATCH")
                ]
            )
    provider.force_flush()

    received = otlp_receiver.spans()
    errors = [s for s in received if s.status_code == "ERROR"]
    names = {s.name for s in errors}
    # Every place the canary was offered is an error span that arrived, recorded without it.
    assert "GET /api/v1/namespaces/{:namespace}/pods/{:name}" in names
    assert "PATCH /apis/kopf.dev/v1/namespaces/{:namespace}/kopfexamples/{:name}" in names
    assert "kopf.on.create kopfexamples.kopf.dev" in names
    for span in received:
        assert CANARY not in repr(span), span.name
    for span in errors:
        [event] = [e for e in span.events if e[0] == "exception"]
        assert event[1]["exception.type"]
        assert "exception.stacktrace" in event[1]
    [failed_get] = [s for s in errors if s.name.startswith("GET /api/v1/namespaces")]
    assert failed_get.status_message == "ApiException: HTTP 500 Internal Server Error"

    formatter = logging.Formatter()
    leaked = [
        r.name for r in caplog.records if CANARY in formatter.format(r) and not r.name.startswith(THEIR_OWN)
    ]
    assert leaked == []
    # The test can fail: the canary did reach the libraries' own loggers.
    assert any(CANARY in formatter.format(r) for r in caplog.records)


def test_handler_messages_are_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor as Processor

    for option, env, expected in (
        (None, "", False),
        (None, "true", True),
        (False, "true", False),
        (True, "", True),
    ):
        monkeypatch.setenv("K8S_OTEL_RECORD_EXCEPTION_MESSAGES", env)
        provider = TracerProvider()
        memory = InMemorySpanExporter()
        provider.add_span_processor(Processor(memory))
        instrumentor = KopfInstrumentor()
        options: dict[str, Any] = {"tracer_provider": provider}
        if option is not None:
            options["record_exception_messages"] = option
        instrumentor.instrument(**options)
        try:
            spans = _handler_spans_for(ValueError(f"bad {CANARY}"))
        finally:
            instrumentor.uninstrument()
        [span] = spans(memory)
        [event] = span.events
        assert ("exception.message" in (event.attributes or {})) is expected, (option, env)
        assert (CANARY in (span.status.description or "")) is expected


def _handler_spans_for(error: BaseException) -> Any:
    """Run one kopf create handler that raises ``error`` through kopf's own ``invoke_handler``."""
    import asyncio
    import datetime

    from kopf._cogs.structs import bodies, ephemera, patches, references
    from kopf._core.actions import execution
    from kopf._core.engines import indexing
    from kopf._core.intents import causes, handlers

    def fails(**_: Any) -> None:
        raise error

    handler = handlers.ChangingHandler(
        fn=fails, id="fails", param=None, errors=None, timeout=None, retries=None, backoff=None,
        selector=references.Selector(*EXAMPLES), labels=None, annotations=None, when=None, field=None,
        value=None, old=None, new=None, field_needs_change=None, initial=None, deleted=None,
        requires_finalizer=None, reason=causes.Reason.CREATE,
    )  # fmt: skip
    cause = causes.ChangingCause(
        logger=logging.getLogger("test"),
        indices=indexing.OperatorIndexers().indices,
        memo=ephemera.AnyMemo(ephemera.Memo()),
        resource=references.Resource(*EXAMPLES),
        patch=patches.Patch(),
        body=bodies.Body({"metadata": {"name": "ex1", "namespace": "default"}}),
        initial=False,
        reason=causes.Reason.CREATE,
    )

    async def invoke() -> None:
        await execution.invoke_handler(
            handler=handler,
            cause=cause,
            retry=0,
            started=datetime.datetime.now(datetime.timezone.utc),
            runtime=datetime.timedelta(0),
            settings=kopf.OperatorSettings(),
            lifecycle=None,
            subrefs=set(),
            extra_context=execution.no_extra_context,
        )

    with pytest.raises(type(error)):
        asyncio.run(invoke())
    return lambda memory: memory.get_finished_spans()
