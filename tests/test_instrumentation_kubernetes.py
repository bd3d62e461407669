"""The kubernetes client instrumentation: real clients against a fake kube-apiserver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import kubernetes
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fake_cluster import FakeCluster
from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
from recording import recording_provider


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    provider, memory = recording_provider()
    instrumentor = KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield memory
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def apiserver() -> Iterator[FakeCluster]:
    with FakeCluster.with_pods("web-0", "web-1").running() as fake:
        yield fake


def core(host: str) -> kubernetes.client.CoreV1Api:
    configuration = kubernetes.client.Configuration(host=host)
    configuration.retries = 0
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


def test_get_is_named_as_kube_apiserver_names_it(
    exporter: InMemorySpanExporter, apiserver: FakeCluster
) -> None:
    pod = core(apiserver.host).read_namespaced_pod("web-0", "default")
    assert pod.metadata.name == "web-0"
    span = only_span(exporter)
    assert span.name == "GET /api/v1/namespaces/{:namespace}/pods/{:name}"
    assert span.kind.name == "CLIENT"
    attributes = dict(span.attributes or {})
    assert {k: attributes[k] for k in ("verb", "resource", "k8s.namespace.name", "name", "api-version")} == {
        "verb": "GET",
        "resource": "pods",
        "k8s.namespace.name": "default",
        "name": "web-0",
        "api-version": "v1",
    }
    assert "api-group" not in attributes and "subresource" not in attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1"
    assert str(attributes["url.full"]).endswith("/api/v1/namespaces/default/pods/web-0")
    # traceparent reached the server and names this span.
    [request] = apiserver.requests
    context = span.context
    assert (
        request.headers["traceparent"]
        == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )


def test_list_with_selectors(exporter: InMemorySpanExporter, apiserver: FakeCluster) -> None:
    pods = core(apiserver.host).list_namespaced_pod("default", label_selector="app=web")
    assert len(pods.items) == 2
    span = only_span(exporter)
    assert span.name == "GET /api/v1/namespaces/{:namespace}/pods"
    assert span.attributes is not None
    assert span.attributes["verb"] == "LIST"
    assert "labelSelector=app%3Dweb" in str(span.attributes["url.full"])


def test_a_watch_is_one_span_for_the_request_that_opens_it(
    exporter: InMemorySpanExporter, apiserver: FakeCluster
) -> None:
    versions: list[str] = []

    def change() -> None:
        apiserver.wait_for_watch("pods")
        for replicas in range(3):
            changed = apiserver.update(
                "pods", "default", "web-0", {"metadata": {"labels": {"n": str(replicas)}}}
            )
            versions.append(changed["metadata"]["resourceVersion"])

    changer = threading.Thread(target=change)
    changer.start()
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(core(apiserver.host).list_namespaced_pod, "default", timeout_seconds=5):
        events.append(event)
        if len(events) == 3:
            watch.stop()
    changer.join(5)
    assert [e["object"].metadata.resource_version for e in events] == versions
    span = only_span(exporter)  # not one per event
    assert span.name == "GET /api/v1/namespaces/{:namespace}/pods"
    assert span.attributes is not None
    assert span.attributes["verb"] == "WATCH"


@pytest.mark.parametrize(("call", "status"), [("missing", 404), ("conflict", 409), ("boom", 500)])
def test_api_exceptions_are_recorded_with_their_status(
    exporter: InMemorySpanExporter, apiserver: FakeCluster, call: str, status: int
) -> None:
    api = core(apiserver.host)
    apiserver.failures = [
        ("PATCH", "/pods/conflict", 409, "the object has been modified"),
        ("GET", "/pods/boom", 500, "etcd is having a bad day"),
    ]
    body = {"metadata": {"labels": {"a": "b"}}}
    calls = {
        "conflict": lambda: api.patch_namespaced_pod(call, "default", body),
        "missing": lambda: api.read_namespaced_pod(call, "default"),
        "boom": lambda: api.read_namespaced_pod(call, "default"),
    }
    with pytest.raises(kubernetes.client.ApiException) as raised:
        calls[call]()
    assert raised.value.status == status
    span = only_span(exporter)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes["error.type"] == str(status)
    if call == "conflict":
        assert span.name == "PATCH /api/v1/namespaces/{:namespace}/pods/{:name}"
        assert span.attributes["verb"] == "PATCH"


def test_connection_refused(exporter: InMemorySpanExporter) -> None:
    with FakeCluster().running() as gone:
        host = gone.host
    import urllib3

    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core(host).read_namespaced_pod("web-0", "default")
    span = only_span(exporter)
    assert span.status.status_code.name == "ERROR"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "MaxRetryError"
    assert "http.response.status_code" not in span.attributes
    assert [event.name for event in span.events] == ["exception"]


def test_no_double_span_with_the_urllib3_instrumentation(
    exporter: InMemorySpanExporter, apiserver: FakeCluster
) -> None:
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    urllib3 = URLLib3Instrumentor()
    urllib3.instrument(tracer_provider=provider)
    try:
        core(apiserver.host).read_namespaced_pod("web-1", "default")
    finally:
        urllib3.uninstrument()
    assert [s.name for s in exporter.get_finished_spans()] == [
        "GET /api/v1/namespaces/{:namespace}/pods/{:name}"
    ]


def test_uninstrument_and_idempotence(apiserver: FakeCluster) -> None:
    provider, memory = recording_provider()
    instrumentor = KubernetesClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    instrumentor.instrument(tracer_provider=provider)  # a second call changes nothing
    core(apiserver.host).read_namespaced_pod("web-0", "default")
    instrumentor.uninstrument()
    core(apiserver.host).read_namespaced_pod("web-0", "default")
    assert len(memory.get_finished_spans()) == 1
    assert "traceparent" not in apiserver.requests[-1].headers


def test_kubernetes_asyncio(exporter: InMemorySpanExporter, apiserver: FakeCluster) -> None:
    import kubernetes_asyncio

    async def read() -> str:
        configuration = kubernetes_asyncio.client.Configuration(host=apiserver.host)
        async with kubernetes_asyncio.client.ApiClient(configuration) as client:
            api = kubernetes_asyncio.client.CoreV1Api(client)
            pod = await api.read_namespaced_pod("web-1", "default")
            with pytest.raises(kubernetes_asyncio.client.ApiException):
                await api.read_namespaced_pod("missing", "default")
            return str(pod.metadata.name)

    assert asyncio.run(read()) == "web-1"
    ok, missing = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert ok.name == missing.name == "GET /api/v1/namespaces/{:namespace}/pods/{:name}"
    assert ok.attributes is not None and missing.attributes is not None
    assert (ok.attributes["http.response.status_code"], missing.attributes["http.response.status_code"]) == (
        200,
        404,
    )
    assert missing.status.status_code.name == "ERROR"
    # The ApiException's text holds the response headers and body; only the status is recorded.
    [event] = missing.events
    assert dict(event.attributes or {})["exception.message"] == "HTTP 404 Not Found"
    assert missing.status.description == "ApiException: HTTP 404 Not Found"
    assert apiserver.requests[0].headers["traceparent"].split("-")[2] == f"{ok.context.span_id:016x}"


def test_entry_point_is_registered() -> None:
    from opentelemetry.util._importlib_metadata import entry_points  # group= on every Python version

    [entry] = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "kubernetes"]
    assert entry.load() is KubernetesClientInstrumentor
