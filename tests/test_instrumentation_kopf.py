"""The kopf instrumentation: a real kopf operator, run in-process against a fake kube-apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import aiohttp
import kopf
import kubernetes
import kubernetes_asyncio
import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fake_cluster import FakeCluster, pod
from k8s_otel._trust import Caller
from k8s_otel.instrumentation._kopf import KopfInstrumentor, check_annotation_name
from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
from recording import recording_provider

EXAMPLES = ("kopf.dev", "v1", "kopfexamples")
FIXTURES = Path(__file__).parent / "fixtures" / "admission"
REMOTE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {predicate}")


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (port 0) but not listening, until the end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class RecordingWebhookServer(kopf.WebhookServer):
    """kopf's own webhook server on a port it picks (port 0); the URL it advertises is kept."""

    urls: list[str]

    async def __call__(self, fn: Any) -> Any:  # type: ignore[override]
        async for client_config in super().__call__(fn):
            self.urls.append(str(client_config.get("url")))
            yield client_config


class Operator:
    """A kopf operator in a thread, instrumented, against the fake cluster."""

    def __init__(self, cluster: FakeCluster, exporter: InMemorySpanExporter) -> None:
        self.cluster = cluster
        self.exporter = exporter
        self.registry = kopf.OperatorRegistry()
        self.webhook: RecordingWebhookServer | None = None

        @kopf.on.login(registry=self.registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=cluster.host, insecure=True)

        @kopf.on.startup(registry=self.registry)
        async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.networking.error_backoffs = [0.02]
            settings.watching.reconnect_backoff = 0.05
            settings.posting.enabled = False
            if self.webhook is not None:
                settings.admission.server = self.webhook

    def noop(self, decorator: Callable[..., Any], *, id: str, **options: Any) -> None:
        """Register a handler that does nothing, as ``id``, on the example resource."""

        def handler(**_: Any) -> None:
            pass

        decorator(*EXAMPLES, registry=self.registry, id=id, **options)(handler)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def wait_spans(self, name: str, count: int = 1, timeout: float = 10.0) -> list[ReadableSpan]:
        return wait_for(lambda: len(self.spans(name)) >= count and self.spans(name), timeout)

    @contextmanager
    def running(self, watching: bool = True) -> Iterator[Operator]:
        stop, ready = threading.Event(), threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=self.registry,
                        standalone=True,
                        clusterwide=True,
                        stop_flag=stop,
                        ready_flag=ready,
                    )
                )
            except BaseException as error:  # surfaced below
                failure.append(error)

        thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        thread.start()
        try:
            assert ready.wait(10)
            # The watch stream is open: changes made from now on are seen as they happen.
            if watching:
                wait_for(
                    lambda: any("watch=true" in r.query for r in self.cluster.seen("GET", "/kopfexamples"))
                )
            yield self
        finally:
            stop.set()
            thread.join(15)
            assert not thread.is_alive(), "the operator did not stop"
            assert not failure, failure


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    provider, memory = recording_provider()
    kopf_instrumentor = KopfInstrumentor()
    kopf_instrumentor.instrument(tracer_provider=provider, traceparent_annotation="k8s-otel.io/traceparent")
    client_instrumentor = KubernetesClientInstrumentor()
    client_instrumentor.instrument(tracer_provider=provider)
    try:
        yield memory
    finally:
        kopf_instrumentor.uninstrument()
        client_instrumentor.uninstrument()


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    with FakeCluster().running() as fake:
        yield fake


def example(name: str, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **metadata}, "spec": {"size": 1}}


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_create_handler_is_a_span_with_the_objects_identity_and_kopfs_patch_is_its_child(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
    def created(name: str, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
        patch.status["seen"] = name
        return {"ok": True}

    with operator.running():
        made = cluster.create("kopfexamples", example("ex1", namespace="team-a"))
        [span] = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev")
        wait_for(lambda: cluster.field("kopfexamples", "team-a", "ex1", "status", "seen"))

    assert span.kind.name == "CONSUMER"  # a reconcile (KEP-5915)
    assert span.parent is None  # a watch event starts a new trace
    assert span.status.status_code is StatusCode.UNSET
    assert attributes(span) == {
        "api-group": "kopf.dev",
        "api-version": "v1",
        "resource": "kopfexamples",
        "kopf.handler.type": "create",
        "kopf.handler.id": "created",
        "kopf.event.type": "create",
        "kopf.retry": 0,
        "name": "ex1",
        "k8s.namespace.name": "team-a",
        "metadata.uid": made["metadata"]["uid"],
        "kopf.outcome": "success",
    }
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "k8s_otel.instrumentation.kopf"
    # kopf applies the handler's patch after the handler returns: object and status, both children.
    patches = [s for s in operator.spans() if s.name.startswith("PATCH ") and s.parent is not None]
    names = {s.name for s in patches if s.parent.span_id == span.context.span_id}  # type: ignore[union-attr]
    assert names == {
        "PATCH /apis/kopf.dev/v1/namespaces/{:namespace}/kopfexamples/{:name}",
        "PATCH /apis/kopf.dev/v1/namespaces/{:namespace}/kopfexamples/{:name}/status",
    }
    status_patch = next(s for s in patches if s.name.endswith("/status"))
    assert attributes(status_patch)["subresource"] == "status"
    assert attributes(status_patch)["verb"] == "PATCH"
    assert attributes(status_patch)["http.response.status_code"] == 200
    assert attributes(status_patch)["server.address"] == "127.0.0.1"
    # The traceparent kopf sent on that PATCH names the span.
    sent = [r.headers.get("traceparent") for r in cluster.seen("PATCH", "/ex1/status")]
    assert traceparent_of(status_patch) in sent


def test_unsampled_nothing_is_recorded_and_the_context_still_flows(cluster: FakeCluster) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))  # Kubernetes' default: no rate set
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    operator = Operator(cluster, memory)
    seen: list[str] = []

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
    def created(name: str, patch: kopf.Patch, **_: Any) -> None:
        context = trace.get_current_span().get_span_context()
        seen.append(f"{context.trace_id:032x} {context.is_valid} {context.trace_flags.sampled}")
        patch.status["done"] = name

    try:
        with operator.running():
            cluster.create("kopfexamples", example("ex1"))
            wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "status", "done"))
    finally:
        instrumentor.uninstrument()
    assert memory.get_finished_spans() == ()
    [handler] = seen
    trace_id, valid, sampled = handler.split()
    assert (valid, sampled) == ("True", "False")  # the handler runs in a valid, unsampled context
    # The status PATCH after the handler carries the handler's trace, not sampled.
    [status_patch] = cluster.seen("PATCH", "/ex1/status")
    _, sent_trace_id, _, flags = status_patch.headers["traceparent"].split("-")
    assert sent_trace_id == trace_id and int(flags, 16) & 0x01 == 0


def test_kopfs_own_calls_are_client_spans_named_as_kube_apiserver_names_them(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.event, id="seen")

    with operator.running():
        pass
    by_name = {s.name: s for s in operator.spans()}
    watch = [
        s
        for s in operator.spans()
        if s.name == "GET /apis/kopf.dev/v1/kopfexamples" and attributes(s)["verb"] == "WATCH"
    ]
    listing = [
        s
        for s in operator.spans()
        if s.name == "GET /apis/kopf.dev/v1/kopfexamples" and attributes(s)["verb"] == "LIST"
    ]
    assert watch and listing
    assert watch[0].kind.name == "CLIENT"
    assert str(attributes(watch[0])["url.full"]).startswith(
        f"{cluster.host}/apis/kopf.dev/v1/kopfexamples?watch=true"
    )
    assert "GET" in by_name  # discovery: a non-resource request is named by its method only
    # Every kopf request carried a traceparent naming one of these spans.
    sent = {r.headers.get("traceparent") for r in cluster.requests}
    assert {traceparent_of(s) for s in operator.spans() if s.kind.name == "CLIENT"} <= sent
    # Login and startup are activities, not reconciles: no spans.
    assert not [s for s in operator.spans() if s.name.startswith("kopf.")]


def test_with_the_aiohttp_client_instrumentation_on_each_kopf_call_is_one_span(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    provider, aiohttp_spans = recording_provider()
    stock = AioHttpClientInstrumentor()
    stock.instrument(tracer_provider=provider)
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.event, id="seen")

    try:
        with operator.running():
            pass
    finally:
        stock.uninstrument()
    ours = [s for s in operator.spans() if s.kind.name == "CLIENT"]
    assert len(ours) == len(cluster.requests) >= 5
    assert aiohttp_spans.get_finished_spans() == ()


def test_kubernetes_client_calls_inside_sync_and_async_handlers_are_children(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)
    cluster.create("pods", pod("web-0"))
    outcomes: list[str] = []

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="sync_handler")
    def sync_handler(namespace: str, **_: Any) -> None:
        configuration = kubernetes.client.Configuration(host=cluster.host)
        api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        api.read_namespaced_pod("web-0", namespace)
        try:
            api.read_namespaced_pod("missing", namespace)
        except kubernetes.client.ApiException as error:
            outcomes.append(f"sync {error.status}")

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="async_handler")
    async def async_handler(namespace: str, **_: Any) -> None:
        configuration = kubernetes_asyncio.client.Configuration(host=cluster.host)
        async with kubernetes_asyncio.client.ApiClient(configuration) as client:
            pods = await kubernetes_asyncio.client.CoreV1Api(client).list_namespaced_pod(namespace)
            outcomes.append(f"async {len(pods.items)}")

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        handlers = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 2)
        wait_for(lambda: len(outcomes) == 2)

    by_handler = {attributes(s)["kopf.handler.id"]: s for s in handlers}
    children = {
        handler: sorted(
            (s.name, attributes(s).get("http.response.status_code"))
            for s in operator.spans()
            if s.parent is not None
            and s.parent.span_id == span.context.span_id
            and s.kind.name == "CLIENT"
            and not s.name.startswith("PATCH")
        )
        for handler, span in by_handler.items()
    }
    assert children == {
        "sync_handler": [
            ("GET /api/v1/namespaces/{:namespace}/pods/{:name}", 200),
            ("GET /api/v1/namespaces/{:namespace}/pods/{:name}", 404),
        ],
        "async_handler": [("GET /api/v1/namespaces/{:namespace}/pods", 200)],
    }
    assert sorted(outcomes) == ["async 1", "sync 404"]
    # The 404 is an error on the client span, not on the handler (which caught it).
    assert by_handler["sync_handler"].status.status_code is StatusCode.UNSET
    [missing] = [
        s for s in operator.spans() if s.kind.name == "CLIENT" and attributes(s).get("name") == "missing"
    ]
    assert missing.status.status_code is StatusCode.ERROR
    assert attributes(missing)["error.type"] == "404"


def test_temporary_permanent_and_other_errors_are_told_apart(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="later")
    def later(retry: int, **_: Any) -> None:
        if retry == 0:
            raise kopf.TemporaryError("the database is not ready", delay=0.1)

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="never")
    def never(**_: Any) -> None:
        raise kopf.PermanentError("spec.size must be positive")

    @kopf.on.create(*EXAMPLES, registry=operator.registry, errors=kopf.ErrorsMode.PERMANENT, id="broken")
    def broken(**_: Any) -> None:
        raise ValueError("a bug")

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        spans = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 4)

    by_handler: dict[str, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        by_handler.setdefault(str(attributes(span)["kopf.handler.id"]), []).append(span)
    first, second = by_handler["later"]
    assert (attributes(first)["kopf.outcome"], attributes(first)["kopf.retry"]) == ("retry", 0)
    assert first.status.status_code is StatusCode.UNSET  # a requeue, not a failure
    assert attributes(first)["error.type"] == "TemporaryError"
    assert attributes(first)["kopf.retry.delay"] == 0.1
    assert [e.name for e in first.events] == ["exception"]
    assert (attributes(second)["kopf.outcome"], attributes(second)["kopf.retry"]) == ("success", 1)
    [never_span] = by_handler["never"]
    assert attributes(never_span)["kopf.outcome"] == "permanent-error"
    assert never_span.status.status_code is StatusCode.ERROR
    assert never_span.status.description == "PermanentError"  # handler messages are opt-in
    [broken_span] = by_handler["broken"]
    assert attributes(broken_span)["kopf.outcome"] == "error"
    assert attributes(broken_span)["error.type"] == "ValueError"
    assert broken_span.status.status_code is StatusCode.ERROR
    assert broken_span.events[0].attributes["exception.type"] == "ValueError"  # type: ignore[index]
    assert "exception.message" not in (broken_span.events[0].attributes or {})


def test_update_field_event_timer_and_daemon_handlers(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.update, id="updated")

    @kopf.on.field(*EXAMPLES, field="spec.size", registry=operator.registry, id="resized")
    def resized(old: Any, new: Any, **_: Any) -> None:
        pass

    operator.noop(kopf.on.event, id="watched")

    operator.noop(kopf.timer, id="ticked", interval=0.1)

    @kopf.daemon(*EXAMPLES, registry=operator.registry, cancellation_timeout=1.0, id="background")
    async def background(stopped: kopf.DaemonStopped, **_: Any) -> None:
        await stopped.wait()

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        operator.wait_spans("kopf.on.event kopfexamples.kopf.dev")
        operator.wait_spans("kopf.timer kopfexamples.kopf.dev", 2)
        # kopf records what it handled; change the object only after that, as a user would.
        wait_for(
            lambda: (
                "kopf.zalando.org/last-handled-configuration"
                in (cluster.field("kopfexamples", "default", "ex1", "metadata", "annotations") or {})
            )
        )
        cluster.update("kopfexamples", "default", "ex1", {"spec": {"size": 3}})
        [update] = operator.wait_spans("kopf.on.update kopfexamples.kopf.dev")
        fields = operator.wait_spans("kopf.on.field kopfexamples.kopf.dev", 2)  # on create, then on update
    # A daemon's span ends with the daemon: here when the operator stops (kopf 1.38 also restarts it).
    daemons = operator.wait_spans("kopf.daemon kopfexamples.kopf.dev")

    assert attributes(update)["kopf.event.type"] == "update"
    assert [(attributes(f)["kopf.handler.type"], attributes(f)["kopf.event.type"]) for f in fields] == [
        ("field", "create"),
        ("field", "update"),
    ]
    assert attributes(fields[0])["kopf.handler.id"] == "resized/spec.size"
    event_types = {
        attributes(s).get("kopf.event.type") for s in operator.spans("kopf.on.event kopfexamples.kopf.dev")
    }
    assert {"ADDED", "MODIFIED"} <= event_types
    timer = operator.spans("kopf.timer kopfexamples.kopf.dev")[0]
    assert attributes(timer)["kopf.handler.type"] == "timer"
    assert "kopf.event.type" not in attributes(timer)
    for daemon in daemons:
        assert attributes(daemon)["kopf.handler.type"] == "daemon"
        assert attributes(daemon)["kopf.outcome"] in ("success", "cancelled")
        assert daemon.status.status_code is StatusCode.UNSET


def test_resume_and_subhandlers(exporter: InMemorySpanExporter, cluster: FakeCluster) -> None:
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.resume, id="resumed")

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="steps")
    def steps(**_: Any) -> None:
        for step in ("one", "two"):

            @kopf.subhandler(id=step)
            def run_step(**_: Any) -> None:
                pass

    # An object this operator handled before it restarted (kopf's own record says so).
    handled = {"kopf.zalando.org/last-handled-configuration": json.dumps({"spec": {"size": 1}})}
    cluster.create("kopfexamples", example("old", annotations=handled))
    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        [resume] = operator.wait_spans("kopf.on.resume kopfexamples.kopf.dev")
        subs = operator.wait_spans("kopf.subhandler kopfexamples.kopf.dev", 2)
        wait_for(lambda: operator.spans("kopf.on.create kopfexamples.kopf.dev"))

    assert (attributes(resume)["kopf.handler.type"], attributes(resume)["kopf.event.type"]) == (
        "resume",
        "resume",
    )
    assert attributes(resume)["name"] == "old"
    assert sorted(attributes(s)["kopf.handler.id"] for s in subs) == ["steps/one", "steps/two"]
    parents = {s.context.span_id for s in operator.spans("kopf.on.create kopfexamples.kopf.dev")}
    assert all(s.parent is not None and s.parent.span_id in parents for s in subs)


def test_traceparent_annotation_is_a_link_never_the_parent(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.create, id="created")

    with operator.running():
        cluster.create(
            "kopfexamples", example("linked", annotations={"k8s-otel.io/traceparent": REMOTE_TRACEPARENT})
        )
        cluster.create(
            "kopfexamples",
            example("garbled", annotations={"k8s-otel.io/traceparent": "00-zz-not-a-traceparent"}),
        )
        cluster.create("kopfexamples", example("plain"))
        spans = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 3)

    by_name = {attributes(s)["name"]: s for s in spans}
    linked = by_name["linked"]
    assert linked.parent is None
    assert linked.context.trace_id != 0x0AF7651916CD43DD8448EB211C80319C
    [link] = linked.links
    assert (link.context.trace_id, link.context.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )
    assert dict(link.attributes or {}) == {"k8s_otel.link.annotation": "k8s-otel.io/traceparent"}
    assert not by_name["garbled"].links and attributes(by_name["garbled"])["kopf.outcome"] == "success"
    assert not by_name["plain"].links


KEP_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00"


def test_the_kep_annotation_is_a_link_by_default_and_the_option_adds_a_key(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)
    operator.noop(kopf.on.create, id="created")
    operator.noop(kopf.on.timer, id="ticks", interval=0.05)

    with operator.running():
        cluster.create(
            "kopfexamples",
            example(
                "both",
                annotations={
                    "tracing.k8s.io/traceparent": KEP_TRACEPARENT,
                    "k8s-otel.io/traceparent": REMOTE_TRACEPARENT,
                },
            ),
        )
        cluster.create(
            "kopfexamples",
            example(
                "same",
                annotations={
                    "tracing.k8s.io/traceparent": REMOTE_TRACEPARENT,
                    "k8s-otel.io/traceparent": REMOTE_TRACEPARENT,
                },
            ),
        )
        cluster.create(
            "kopfexamples", example("kep", annotations={"tracing.k8s.io/traceparent": KEP_TRACEPARENT})
        )
        spans = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 3)
        [timer, *_] = operator.wait_spans("kopf.timer kopfexamples.kopf.dev")

    by_name = {attributes(s)["name"]: s for s in spans}
    both = by_name["both"]
    assert both.kind.name == "CONSUMER" and both.parent is None
    assert [(f"{link.context.trace_id:032x}", dict(link.attributes or {})) for link in both.links] == [
        ("4bf92f3577b34da6a3ce929d0e0e4737", {"k8s_otel.link.annotation": "tracing.k8s.io/traceparent"}),
        ("0af7651916cd43dd8448eb211c80319c", {"k8s_otel.link.annotation": "k8s-otel.io/traceparent"}),
    ]
    assert not both.links[0].context.trace_flags.sampled  # an unsampled stamp is still a link
    assert len(by_name["same"].links) == 1  # one link per stored context
    [kep] = by_name["kep"].links
    assert dict(kep.attributes or {}) == {"k8s_otel.link.annotation": "tracing.k8s.io/traceparent"}
    assert timer.kind.name == "CONSUMER" and not timer.links  # not triggered by a write


def test_the_annotation_is_opt_in_and_read_from_the_env(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, memory = recording_provider()
    annotations = {"k8s-otel.io/traceparent": REMOTE_TRACEPARENT, "example.com/trace": REMOTE_TRACEPARENT}
    for env, expected in ((None, 0), ("example.com/trace", 1)):
        if env is None:
            monkeypatch.delenv("K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION", raising=False)
        else:
            monkeypatch.setenv("K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION", env)
        instrumentor = KopfInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        memory.clear()
        operator = Operator(cluster, memory)

        operator.noop(kopf.on.create, id="created")

        try:
            with operator.running():
                cluster.create("kopfexamples", example(f"ex-{expected}", annotations=annotations))
                [span] = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev")
        finally:
            instrumentor.uninstrument()
        assert len(span.links) == expected
        if expected:
            assert dict(span.links[0].attributes or {}) == {"k8s_otel.link.annotation": "example.com/trace"}


def admission_review(operation: str, obj: dict[str, Any]) -> dict[str, Any]:
    review = json.loads((FIXTURES / "admission.k8s.io.v1.AdmissionReview.json").read_text())
    request = review["request"]
    request.update(
        operation=operation,
        kind={"group": "kopf.dev", "version": "v1", "kind": "KopfExample"},
        resource={"group": "kopf.dev", "version": "v1", "resource": "kopfexamples"},
        requestKind={"group": "kopf.dev", "version": "v1", "kind": "KopfExample"},
        requestResource={"group": "kopf.dev", "version": "v1", "resource": "kopfexamples"},
        subResource=None,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"]["namespace"],
        object=obj,
        oldObject=None,
        dryRun=False,
    )
    review.pop("response", None)
    return review


@pytest.mark.parametrize("trust", ["trust", "link"])
def test_validate_and_mutate_handlers_continue_kube_apiservers_trace(
    cluster: FakeCluster, trust: str
) -> None:
    provider, memory = recording_provider()
    instrumentor = KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider, trust=trust)
    operator = Operator(cluster, memory)
    operator.webhook = RecordingWebhookServer(addr="127.0.0.1", host="127.0.0.1", insecure=True)
    operator.webhook.urls = []

    @kopf.on.validate(*EXAMPLES, registry=operator.registry, id="check_size")
    def check_size(spec: kopf.Spec, **_: Any) -> None:
        if spec.get("size", 0) < 0:
            raise kopf.AdmissionError("size must not be negative", code=400)

    @kopf.on.mutate(*EXAMPLES, registry=operator.registry, id="add_label")
    def add_label(patch: kopf.Patch, **_: Any) -> None:
        patch.metadata.setdefault("labels", {})["mutated"] = "yes"

    obj = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfExample",
        "metadata": {"name": "ex1", "namespace": "default", "uid": "u-1"},
        "spec": {"size": -1},
    }
    try:
        with operator.running(watching=False):
            url = wait_for(lambda: operator.webhook.urls)[0].rstrip("/")  # type: ignore[union-attr]
            wait_for(lambda: _accepts(url))
            denied = requests.post(
                f"{url}/check_size",
                json=admission_review("CREATE", obj),
                headers={"traceparent": REMOTE_TRACEPARENT},
                timeout=5,
            ).json()
            mutated = requests.post(
                f"{url}/add_label",
                json=admission_review("CREATE", obj),
                headers={"traceparent": REMOTE_TRACEPARENT},
                timeout=5,
            ).json()
            [validate] = operator.wait_spans("kopf.on.validate kopfexamples.kopf.dev")
            [mutate] = operator.wait_spans("kopf.on.mutate kopfexamples.kopf.dev")
    finally:
        instrumentor.uninstrument()

    assert denied["response"]["allowed"] is False
    assert mutated["response"]["allowed"] is True and mutated["response"]["patch"]
    assert attributes(validate)["kopf.outcome"] == "denied"
    assert validate.status.status_code is StatusCode.UNSET  # a denial is the webhook doing its job
    assert attributes(validate)["kopf.event.type"] == "CREATE"
    assert attributes(validate)["kopf.handler.type"] == "validate"
    assert attributes(mutate)["kopf.outcome"] == "success"
    for span in (validate, mutate):
        assert attributes(span)["name"] == "ex1"
        if trust == "trust":
            assert span.parent is not None
            assert (span.parent.trace_id, span.parent.span_id) == (
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
            )
            assert not span.links
        else:
            assert span.parent is None
            assert [(link.context.trace_id) for link in span.links] == [0x0AF7651916CD43DD8448EB211C80319C]


def _accepts(url: str) -> bool:
    try:
        requests.get(url, timeout=0.5)
    except requests.ConnectionError:
        return False
    return True


def test_a_failed_kopf_call_is_recorded_with_its_status(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
    def created(patch: kopf.Patch, **_: Any) -> None:
        patch.status["done"] = True

    # kopf retries a 500 inside one call (one span, which ends well); a 404 means the object is gone.
    cluster.failures.append(("PATCH", "/ex1/status", 500))
    cluster.failures.append(("PATCH", "/gone", 404))
    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        cluster.create("kopfexamples", example("gone"))
        wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "status", "done"))
        wait_for(
            lambda: [s for s in operator.spans() if attributes(s).get("http.response.status_code") == 404]
        )

    status_spans = [
        s for s in operator.spans() if s.name.endswith("/status") and attributes(s)["name"] == "ex1"
    ]
    assert [attributes(s)["http.response.status_code"] for s in status_spans] == [200]
    assert len(cluster.seen("PATCH", "/ex1/status")) == 2  # the failed attempt and the retry
    [gone] = [s for s in operator.spans() if attributes(s).get("http.response.status_code") == 404]
    assert gone.status.status_code is StatusCode.ERROR
    assert attributes(gone)["error.type"] == "404"
    event = dict(gone.events[0].attributes or {})
    assert str(event["exception.type"]).endswith("APINotFoundError")
    # kopf's error text holds the response's Status body; only the status is recorded.
    assert event["exception.message"] == "HTTP 404"
    assert gone.status.description == "APINotFoundError: HTTP 404"


def test_a_conflict_becomes_a_retry_and_a_refused_connection_an_error_on_the_child(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)
    cluster.create("pods", pod("web-0"))
    cluster.failures.append(("PATCH", "/pods/web-0", 409))
    stack = contextlib.ExitStack()
    port = stack.enter_context(refused_port())

    def core(host: str) -> kubernetes.client.CoreV1Api:
        configuration = kubernetes.client.Configuration(host=host)
        configuration.retries = 0
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="label_pod")
    def label_pod(name: str, namespace: str, **_: Any) -> None:
        try:
            core(cluster.host).patch_namespaced_pod(
                "web-0", namespace, {"metadata": {"labels": {"owner": name}}}
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise kopf.TemporaryError("the pod changed under us", delay=0.05) from error
            raise

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="call_elsewhere")
    def call_elsewhere(namespace: str, **_: Any) -> None:
        with contextlib.suppress(Exception):  # the handler copes; the failure is on the child span
            core(f"http://127.0.0.1:{port}").list_namespaced_pod(namespace)

    with stack, operator.running():
        cluster.create("kopfexamples", example("ex1"))
        wait_for(lambda: cluster.field("pods", "default", "web-0", "metadata", "labels", "owner"))
        spans = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 3)

    labels = sorted(
        (s for s in spans if attributes(s)["kopf.handler.id"] == "label_pod"), key=lambda s: s.start_time or 0
    )
    assert [(attributes(s)["kopf.retry"], attributes(s)["kopf.outcome"]) for s in labels] == [
        (0, "retry"),
        (1, "success"),
    ]
    conflict = [
        s
        for s in operator.spans()
        if s.parent is not None
        and s.parent.span_id == labels[0].context.span_id
        and s.name.startswith("PATCH /api/v1/")  # the handler's call, not kopf's own PATCH after it
    ]
    assert [(s.name, attributes(s)["http.response.status_code"]) for s in conflict] == [
        ("PATCH /api/v1/namespaces/{:namespace}/pods/{:name}", 409)
    ]
    [elsewhere] = [s for s in spans if attributes(s)["kopf.handler.id"] == "call_elsewhere"]
    [refused] = [
        s
        for s in operator.spans()
        if s.parent is not None and s.parent.span_id == elsewhere.context.span_id and s.name.startswith("GET")
    ]
    assert refused.name == "GET /api/v1/namespaces/{:namespace}/pods"
    assert refused.status.status_code is StatusCode.ERROR
    assert attributes(refused)["error.type"] == "MaxRetryError"
    assert attributes(refused)["server.port"] == port
    assert attributes(elsewhere)["kopf.outcome"] == "success"


def test_instrument_is_idempotent_and_uninstrument_restores_kopf() -> None:
    from kopf._cogs.clients import api
    from kopf._core.actions import execution
    from kopf._core.reactor import processing

    def current() -> tuple[Any, ...]:
        return (execution.invoke_handler, api.request, processing.process_resource_event)

    original = current()
    instrumentor = KopfInstrumentor()
    instrumentor.instrument()
    wrapped = current()
    assert all(f is not o and f.__wrapped__ is o for f, o in zip(wrapped, original))
    instrumentor.instrument()  # a second call changes nothing
    assert all(a is b for a, b in zip(current(), wrapped))
    instrumentor.uninstrument()
    assert all(a is b for a, b in zip(current(), original))


def test_registered_for_opentelemetry_instrument() -> None:
    from opentelemetry.util._importlib_metadata import entry_points  # group= on every Python version

    [entry] = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "kopf"]
    assert entry.load() is KopfInstrumentor
    assert "kopf >= 1.37" in KopfInstrumentor().instrumentation_dependencies()


def test_a_tracing_failure_never_reaches_the_handler(
    exporter: InMemorySpanExporter, cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = Operator(cluster, exporter)
    calls: list[str] = []

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
    def created(name: str, **_: Any) -> None:
        calls.append(name)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(trace.ProxyTracer, "start_span", broken, raising=False)
    from opentelemetry.sdk.trace import Tracer

    monkeypatch.setattr(Tracer, "start_span", broken)
    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        wait_for(lambda: calls == ["ex1"])
        wait_for(
            lambda: (
                "kopf.zalando.org/last-handled-configuration"
                in (cluster.field("kopfexamples", "default", "ex1", "metadata", "annotations") or {})
            )
        )
    assert not exporter.get_finished_spans()


def test_the_docs_list_every_attribute_key_and_setting() -> None:
    from k8s_otel import _attributes as key
    from k8s_otel.instrumentation import _kopf as instrumentation

    docs = (Path(__file__).resolve().parents[1] / "docs" / "controllers.md").read_text()
    # Attribute keys in the key column of a table, not just anywhere in the prose.
    key_cells = [line.split("|")[1] for line in docs.splitlines() if line.startswith("| `")]
    attributes = [
        key.K8S_NAMESPACE_NAME,
        key.OBJECT_UID,
        key.KOPF_HANDLER_ID,
        key.KOPF_HANDLER_TYPE,
        key.KOPF_EVENT_TYPE,
        key.KOPF_RETRY,
        key.KOPF_OUTCOME,
        key.KOPF_RETRY_DELAY,
    ]
    from doc_tables import tokens

    in_cells = set().union(
        *(tokens(cell) for cell in key_cells)
    )  # whole tokens: `retry` is not `retry.delay`
    assert [key for key in attributes if key not in in_cells] == []
    keys = [
        *attributes,
        key.LINK_ANNOTATION,
        instrumentation.TRACEPARENT_ANNOTATION_ENV,
        "k8s-otel.io/traceparent",  # the older annotation convention, documented as an example
    ]
    assert [key for key in keys if f"`{key}`" not in docs] == []


def test_delete_handler_and_its_finalizer_patch(exporter: InMemorySpanExporter, cluster: FakeCluster) -> None:
    operator = Operator(cluster, exporter)

    operator.noop(kopf.on.delete, id="deleted")

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        # kopf puts its finalizer on first, so that it sees the deletion.
        wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "metadata", "finalizers"))
        cluster.delete("kopfexamples", "default", "ex1")
        [span] = operator.wait_spans("kopf.on.delete kopfexamples.kopf.dev")
        wait_for(lambda: cluster.get("kopfexamples", "default", "ex1") is None)  # kopf removed the finalizer

    assert (attributes(span)["kopf.handler.type"], attributes(span)["kopf.event.type"]) == (
        "delete",
        "delete",
    )
    release = [
        s
        for s in operator.spans()
        if s.parent is not None and s.parent.span_id == span.context.span_id and s.name.startswith("PATCH")
    ]
    assert release and all(attributes(s)["name"] == "ex1" for s in release)


def test_a_timers_patch_is_a_child_of_the_timer(exporter: InMemorySpanExporter, cluster: FakeCluster) -> None:
    operator = Operator(cluster, exporter)
    ticks: list[int] = []

    @kopf.timer(*EXAMPLES, interval=0.1, registry=operator.registry, id="ticked")
    def ticked(patch: kopf.Patch, **_: Any) -> None:
        ticks.append(1)
        patch.status["ticks"] = len(ticks)

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        wait_for(lambda: (cluster.field("kopfexamples", "default", "ex1", "status", "ticks") or 0) >= 2)
    timers = {s.context.span_id for s in operator.spans("kopf.timer kopfexamples.kopf.dev")}
    status_patches = [s for s in operator.spans() if s.name.endswith("/status")]
    assert status_patches
    assert all(s.parent is not None and s.parent.span_id in timers for s in status_patches)


def test_a_temporary_error_that_exhausts_the_retries_is_an_error(
    exporter: InMemorySpanExporter, cluster: FakeCluster
) -> None:
    operator = Operator(cluster, exporter)

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="impatient", retries=2)
    def impatient(**_: Any) -> None:
        raise kopf.TemporaryError("still waiting", delay=0.05)

    with operator.running():
        cluster.create("kopfexamples", example("ex1"))
        spans = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev", 2)
    first, last = sorted(spans, key=lambda s: s.start_time or 0)
    assert (attributes(first)["kopf.outcome"], first.status.status_code) == ("retry", StatusCode.UNSET)
    assert (attributes(last)["kopf.retry"], attributes(last)["kopf.outcome"]) == (1, "permanent-error")
    assert last.status.status_code is StatusCode.ERROR
    assert last.status.description == "TemporaryError; kopf gives up: retries or timeout reached"


class ExplodingProcessor(SpanProcessor):
    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "on_start":
            raise RuntimeError("on_start bug")

    def on_end(self, span: Any) -> None:
        if self.where == "on_end":
            raise RuntimeError("on_end bug")


@pytest.mark.parametrize("where", ["on_start", "on_end"])
def test_a_broken_span_processor_never_breaks_the_operator(cluster: FakeCluster, where: str) -> None:
    provider, memory = recording_provider()
    provider.add_span_processor(ExplodingProcessor(where))
    instrumentor = KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    operator = Operator(cluster, memory)
    calls: list[int] = []

    @kopf.on.create(*EXAMPLES, registry=operator.registry, id="created")
    def created(retry: int, patch: kopf.Patch, **_: Any) -> None:
        calls.append(retry)
        patch.status["done"] = True

    try:
        with operator.running():
            cluster.create("kopfexamples", example("ex1"))
            wait_for(lambda: cluster.field("kopfexamples", "default", "ex1", "status", "done"))
    finally:
        instrumentor.uninstrument()
    assert calls == [0]  # called once: kopf never saw a failure


def test_kopfs_own_call_to_a_refused_server(exporter: InMemorySpanExporter) -> None:
    import logging

    from kopf._cogs.clients import api, auth

    settings = kopf.OperatorSettings()
    settings.networking.error_backoffs = []  # escalate at once

    async def call(port: int) -> None:
        context = auth.APIContext(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", insecure=True))
        try:
            await api.request(
                "get", "/api/v1/namespaces", settings=settings, logger=logging.getLogger("t"), context=context
            )
        finally:
            await context.session.close()

    with refused_port() as port, pytest.raises(aiohttp.ClientConnectionError) as raised:
        asyncio.run(call(port))
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /api/v1/namespaces" and attributes(span)["verb"] == "LIST"
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)["error.type"] == type(raised.value).__qualname__
    assert "http.response.status_code" not in attributes(span)


def test_the_annotation_name_is_checked() -> None:
    for bad in ("", "bad name", "-x", "Example.COM/trace", "a/b/c"):
        with pytest.raises(ValueError, match=f"traceparent_annotation.*{re.escape(repr(bad))}"):
            KopfInstrumentor().instrument(traceparent_annotation=bad)
    with pytest.raises(TypeError, match=r"traceparent_annotation.*bool"):  # the argument, and what it got
        KopfInstrumentor().instrument(traceparent_annotation=True)
    for good in ("trace", "k8s-otel.io/traceparent", "example.com/Trace_Parent.1"):
        assert check_annotation_name(good) == good


def test_a_bad_annotation_env_var_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION", "not valid!")
    instrumentor = KopfInstrumentor()
    instrumentor.instrument()
    instrumentor.uninstrument()
    [record] = [r for r in caplog.records if "K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION" in r.getMessage()]
    assert record.levelname == "ERROR" and "not a valid annotation key" in record.getMessage()


def test_a_trust_rule_sees_the_kopf_cause(cluster: FakeCluster) -> None:
    provider, memory = recording_provider()
    seen: list[Any] = []

    def rule(caller: Caller) -> bool:
        seen.append(caller.request)
        return bool(caller.request.headers.get("x-trusted"))

    instrumentor = KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider, trust=rule)
    operator = Operator(cluster, memory)
    operator.webhook = RecordingWebhookServer(addr="127.0.0.1", host="127.0.0.1", insecure=True)
    operator.webhook.urls = []

    operator.noop(kopf.on.validate, id="check")

    obj = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfExample",
        "metadata": {"name": "ex1", "namespace": "default"},
    }
    try:
        with operator.running(watching=False):
            url = wait_for(lambda: operator.webhook.urls)[0].rstrip("/")  # type: ignore[union-attr]
            wait_for(lambda: _accepts(url))
            for trusted in ("", "yes"):
                headers = {"traceparent": REMOTE_TRACEPARENT, **({"x-trusted": trusted} if trusted else {})}
                requests.post(
                    f"{url}/check", json=admission_review("CREATE", obj), headers=headers, timeout=5
                )
            untrusted, trusted_span = sorted(
                operator.wait_spans("kopf.on.validate kopfexamples.kopf.dev", 2),
                key=lambda s: s.start_time or 0,
            )
    finally:
        instrumentor.uninstrument()
    assert all(hasattr(request, "sslpeer") and hasattr(request, "userinfo") for request in seen)
    assert untrusted.parent is None and len(untrusted.links) == 1
    assert trusted_span.parent is not None and trusted_span.parent.span_id == 0xB7AD6B7169203331


def test_with_sample_linked_a_stamped_objects_reconcile_is_recorded(cluster: FakeCluster) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from k8s_otel._sampling import PerMillionSampler

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=PerMillionSampler(None, sample_linked=True))  # no root sampled
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = KopfInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        operator = Operator(cluster, memory)
        operator.noop(kopf.on.create, id="created")
        with operator.running():
            cluster.create(
                "kopfexamples",
                example("stamped", annotations={"tracing.k8s.io/traceparent": REMOTE_TRACEPARENT}),
            )
            cluster.create(
                "kopfexamples",
                example(
                    "unsampled-stamp",
                    annotations={"tracing.k8s.io/traceparent": REMOTE_TRACEPARENT[:-2] + "00"},
                ),
            )
            cluster.create("kopfexamples", example("plain"))
            [span] = operator.wait_spans("kopf.on.create kopfexamples.kopf.dev")
            wait_for(lambda: all(
                "kopf.zalando.org/last-handled-configuration"
                in (cluster.field("kopfexamples", "default", name, "metadata", "annotations") or {})
                for name in ("stamped", "unsampled-stamp", "plain")
            ))  # fmt: skip
    finally:
        instrumentor.uninstrument()
    # Only the reconcile linked to a sampled request is recorded: both ends of the link are kept.
    assert [attributes(s)["name"] for s in operator.spans("kopf.on.create kopfexamples.kopf.dev")] == [
        "stamped"
    ]
    assert span.kind.name == "CONSUMER" and span.links[0].context.trace_flags.sampled
