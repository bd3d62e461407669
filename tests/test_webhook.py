"""Admission webhook wrappers on real servers, played against a fake kube-apiserver, exported over OTLP."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

import k8s_otel
from k8s_otel._wiring import TracingHandle
from k8s_otel.cli._receiver import OTLPReceiver, ReceivedSpan
from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware
from webhook_support import (
    SECRET_VALUE,
    WebhookCaller,
    asgi_server,
    fixture,
    make_asgi_app,
    make_wsgi_app,
    review,
    wsgi_server,
)

Serve = Callable[..., AbstractContextManager[int]]


@pytest.fixture
def webhook_tracing(otlp_receiver: OTLPReceiver) -> Iterator[TracingHandle]:
    """The webhook's own provider, as configure() builds it: rate unset, so the apiserver decides."""
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, service_name="example-webhook"
    )
    yield handle
    handle.shutdown(5)


@pytest.fixture
def apiserver(otlp_receiver: OTLPReceiver) -> Iterator[WebhookCaller]:
    fake = WebhookCaller(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True))
    yield fake
    fake.provider.shutdown()


@pytest.fixture(params=["wsgi", "asgi"])
def serve(request: pytest.FixtureRequest, webhook_tracing: TracingHandle) -> Serve:
    """Start the example webhook wrapped in the middleware under test, on a real server."""

    @contextmanager
    def start(bare: bool = False, **options: Any) -> Iterator[int]:
        provider = webhook_tracing.tracer_provider
        options.setdefault("tracer_provider", provider)
        if request.param == "wsgi":
            app: Any = make_wsgi_app(provider)
            with wsgi_server(app if bare else WSGIMiddleware(app, **options)) as port:
                yield port
        else:
            app = make_asgi_app(provider)
            with asgi_server(app if bare else ASGIMiddleware(app, **options)) as port:
                yield port

    return start


def spans_of(receiver: OTLPReceiver, handle: TracingHandle, count: int) -> list[ReceivedSpan]:
    handle.force_flush(10)
    return receiver.wait_for_spans(count)


def webhook_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    [span] = [s for s in spans if s.kind == "SERVER"]
    return span


def test_webhook_span_sits_inside_the_apiserver_trace(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    document = review()
    with serve(webhook_type="validating") as port:
        call = apiserver.call(port, json.dumps(document).encode())
    assert call.status == 200
    assert json.loads(call.body)["response"] == {"uid": document["request"]["uid"], "allowed": True}
    spans = spans_of(otlp_receiver, webhook_tracing, 4)
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"Call validating webhook", "HTTP POST", "POST /validate", "policy check"}
    server, child = by_name["POST /validate"], by_name["policy check"]
    # The join: one trace, apiserver span -> client span -> webhook server span -> the webhook's own work.
    assert {s.trace_id for s in spans} == {call.trace_id}
    assert by_name["HTTP POST"].parent_span_id == call.call_span_id
    assert server.parent_span_id == call.client_span_id
    assert child.parent_span_id == server.span_id
    assert (server.kind, server.resource["service.name"]) == ("SERVER", "example-webhook")
    # The apiserver's keys carry the same values on both sides.
    apiserver_side = by_name["Call validating webhook"].attributes
    for key in ("UID", "operation", "resource", "subresource"):
        assert server.attributes.get(key, "") == apiserver_side[key], key
    assert server.attributes["resource"] == "/v1, Resource=secrets"
    assert server.attributes["name"] == "db-credentials"
    assert server.attributes["k8s.namespace.name"] == "my-namespace"
    assert server.attributes["kind"] == "/v1, Kind=Secret"
    assert server.attributes["request.apiVersion"] == "admission.k8s.io/v1"
    assert server.attributes["request.dryRun"] is False
    assert server.attributes["response.allowed"] is True
    assert server.attributes["response.warnings.count"] == 0
    assert server.attributes["admission.webhook.type"] == "validating"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/validate"
    assert server.attributes["url.query"] == "timeout=10s"
    assert server.status_code == "UNSET"
    assert "admission.problems" not in server.attributes


def test_secrets_and_user_are_never_recorded_by_default(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    with serve() as port:
        apiserver.call(port, json.dumps(review()).encode())
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 4))
    recorded = json.dumps([server.attributes, server.events], default=str)
    for forbidden in (SECRET_VALUE, "some-value1", "extraKey", "admin", "my-admin-group", "UpdateOptions"):
        assert forbidden not in recorded


def test_user_is_opt_in(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    with serve(record_user=True) as port:
        apiserver.call(port, json.dumps(review()).encode())
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 4))
    assert server.attributes["request.userInfo.username"] == "admin"
    assert server.attributes["request.userInfo.groups"] == ("system:authenticated", "my-admin-group")
    assert "some-value1" not in json.dumps(server.attributes, default=str)


@pytest.mark.parametrize(
    "name", ["admission.k8s.io.v1.AdmissionReview.json", "admission.k8s.io.v1beta1.AdmissionReview.json"]
)
def test_upstream_fixtures_and_byte_identical_responses(
    serve: Serve,
    apiserver: WebhookCaller,
    otlp_receiver: OTLPReceiver,
    webhook_tracing: TracingHandle,
    name: str,
) -> None:
    body = fixture(name)
    with serve(bare=True) as port:
        bare = apiserver.call(port, body, path="/mutate")
    with serve(webhook_type="mutating") as port:
        wrapped = apiserver.call(port, body, path="/mutate")
    assert (wrapped.status, wrapped.headers, wrapped.body) == (bare.status, bare.headers, bare.body)
    # bare: the apiserver's 2 spans; wrapped: those, the webhook span and its child.
    server = webhook_span(
        [s for s in spans_of(otlp_receiver, webhook_tracing, 6) if s.trace_id == wrapped.trace_id]
    )
    version = "v1" if ".v1." in name else "v1beta1"
    assert server.attributes["request.apiVersion"] == f"admission.k8s.io/{version}"
    assert server.attributes["UID"] == "uidValue"
    assert server.attributes["operation"] == "operationValue"
    assert server.attributes["resource"] == "groupValue/versionValue, Resource=resourceValue"
    # The request's own resource (requestResource/requestSubResource), as the apiserver's span has it.
    assert server.attributes["subresource"] == "requestSubResourceValue"
    assert server.attributes["request.resource"] == "groupValue/versionValue, Resource=resourceValue"
    assert server.attributes["kind"] == "groupValue/versionValue, Kind=kindValue"
    assert server.attributes["request.dryRun"] is True
    assert server.attributes["response.patchType"] == "JSONPatch"
    assert server.attributes["response.patch.operations"] == 1
    assert "extraValue" not in json.dumps(server.attributes, default=str)


def test_denied_is_not_an_error(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    document = review(object={"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"deny": "x"}}})
    with serve() as port:
        call = apiserver.call(port, json.dumps(document).encode())
    assert json.loads(call.body)["response"]["allowed"] is False
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 4))
    assert server.attributes["response.allowed"] is False
    assert server.attributes["response.status.code"] == 403
    assert server.attributes["response.warnings.count"] == 1
    assert server.status_code == "UNSET"


def test_handler_exception_is_an_error_and_propagates(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    with serve(bare=True) as port:
        bare = apiserver.call(port, json.dumps(review()).encode(), path="/boom")
    with serve() as port:
        wrapped = apiserver.call(port, json.dumps(review()).encode(), path="/boom")
    assert wrapped.status == bare.status == 500
    assert wrapped.body == bare.body
    server = webhook_span(
        [s for s in spans_of(otlp_receiver, webhook_tracing, 5) if s.trace_id == wrapped.trace_id]
    )
    assert server.status_code == "ERROR"
    assert server.attributes["error.type"] == "RuntimeError"
    assert [name for name, _ in server.events] == ["exception"]


def test_http_5xx_is_an_error(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    with serve() as port:
        call = apiserver.call(port, json.dumps(review()).encode(), path="/fail")
    assert (call.status, call.body) == (500, b"webhook internal server error")
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 3))
    assert server.status_code == "ERROR"
    assert server.attributes["error.type"] == "500"
    assert any("outside 2xx" in p for p in server.attributes["admission.problems"])


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"not json at all", "application/json", "request body is not JSON"),
        (b"[1, 2]", "application/json", "request body is not a JSON object"),
        # A wrong Content-Type reaches the app as it is, unread, and is flagged.
        (
            json.dumps(review()).encode(),
            "text/plain",
            "request Content-Type is 'text/plain', not application/json: not inspected",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "application/json",
            "has no request",
        ),
        (json.dumps(review(uid="")).encode(), "application/json", "request has no uid"),
        (
            json.dumps(review(version="v2")).encode(),
            "application/json",
            "is not admission.k8s.io/v1 or v1beta1",
        ),
        (
            b"\xff\xfe\x00garbage",
            "application/octet-stream",
            "request Content-Type is 'application/octet-stream'",
        ),
        (b"\xff\xfe\x00garbage", "application/json; charset=utf-8", "request body is not JSON"),
    ],
)
def test_bad_requests_reach_the_app_unchanged(
    serve: Serve,
    apiserver: WebhookCaller,
    otlp_receiver: OTLPReceiver,
    webhook_tracing: TracingHandle,
    body: bytes,
    content_type: str,
    problem: str | None,
) -> None:
    with serve() as port:
        call = apiserver.call(port, body, path="/raw", content_type=content_type)
    assert (call.status, call.body) == (200, f"got {len(body)} bytes".encode())
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 3))
    problems = server.attributes.get("admission.problems", ())
    if problem is None:
        assert not problems
    else:
        assert any(problem in p for p in problems), problems
    assert server.status_code == "UNSET"


def test_oversized_body_passes_through_uninspected(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    body = json.dumps(review(object={"data": "x" * 5000})).encode()
    with serve(max_body_bytes=1024) as port:
        call = apiserver.call(port, body, path="/raw")
    assert call.body == f"got {len(body)} bytes".encode()
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 3))
    assert "UID" not in server.attributes
    assert any("larger than 1024 bytes" in p for p in server.attributes["admission.problems"])


@pytest.mark.parametrize(
    ("path", "webhook_type", "problem"),
    [
        (
            "/echo-bad-uid",
            "validating",
            'expected response.uid="705ab4f5-6393-11e8-b7cc-42010a800002", got "123"',
        ),
        ("/mutate", "validating", "validating webhook may not return response.patch"),
    ],
)
def test_responses_the_apiserver_would_reject_are_flagged(
    serve: Serve,
    apiserver: WebhookCaller,
    otlp_receiver: OTLPReceiver,
    webhook_tracing: TracingHandle,
    caplog: pytest.LogCaptureFixture,
    path: str,
    webhook_type: str,
    problem: str,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="k8s_otel.webhook"),
        serve(webhook_type=webhook_type) as port,
    ):
        call = apiserver.call(port, json.dumps(review()).encode(), path=path)
    assert call.status == 200
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 4))
    assert problem in server.attributes["admission.problems"]
    [record] = [r for r in caplog.records if r.name == "k8s_otel.webhook"]
    assert problem in record.getMessage()
    assert SECRET_VALUE not in record.getMessage()


def test_streamed_responses_still_stream_and_are_inspected(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    document = review()
    with serve(bare=True) as port:
        bare = apiserver.call(port, json.dumps(document).encode(), path="/stream")
    with serve() as port:
        wrapped = apiserver.call(port, json.dumps(document).encode(), path="/stream")
    assert wrapped.body == bare.body
    server = webhook_span(
        [s for s in spans_of(otlp_receiver, webhook_tracing, 6) if s.trace_id == wrapped.trace_id]
    )
    assert server.attributes["response.allowed"] is True


def test_fifty_parallel_requests_give_fifty_correct_spans(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    with serve() as port, ThreadPoolExecutor(max_workers=16) as pool:
        calls = list(
            pool.map(lambda i: apiserver.call(port, json.dumps(review(uid=f"uid-{i}")).encode()), range(50))
        )
    assert all(json.loads(c.body)["response"]["uid"] == f"uid-{i}" for i, c in enumerate(calls))
    spans = spans_of(otlp_receiver, webhook_tracing, 200)
    servers = {s.trace_id: s for s in spans if s.kind == "SERVER"}
    assert len(servers) == 50
    for index, call in enumerate(calls):
        server = servers[call.trace_id]
        assert server.parent_span_id == call.client_span_id
        assert server.attributes["UID"] == f"uid-{index}"
    children = [s for s in spans if s.name == "policy check"]
    assert sorted(c.parent_span_id for c in children) == sorted(s.span_id for s in servers.values())


def test_link_policy_starts_a_new_root_with_a_link(
    serve: Serve, apiserver: WebhookCaller, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    # A new root is sampled by the webhook's own rate: configure one that samples everything.
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    try:
        with serve(trust="link", tracer_provider=handle.tracer_provider) as port:
            call = apiserver.call(port, json.dumps(review()).encode())
        handle.force_flush(10)
        spans = spans_of(otlp_receiver, webhook_tracing, 4)
    finally:
        handle.shutdown(5)
    server = webhook_span(spans)
    assert server.trace_id != call.trace_id
    assert server.parent_span_id == ""
    assert [(trace_id, span_id) for trace_id, span_id, _ in server.links] == [
        (call.trace_id, call.client_span_id)
    ]


def test_unsampled_requests_pass_through_and_propagate(
    serve: Serve, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    quiet = WebhookCaller(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True), sampled=False)
    try:
        with serve(webhook_type="validating") as port:
            call = quiet.call(port, json.dumps(review()).encode())
            no_context = quiet.call(port, json.dumps(review()).encode(), inject_context=False)
    finally:
        quiet.provider.shutdown()
    assert json.loads(call.body)["response"]["allowed"] is True
    assert json.loads(no_context.body)["response"]["allowed"] is True
    webhook_tracing.force_flush(10)
    assert otlp_receiver.spans() == []  # the apiserver said "not sampled"; rate unset never samples roots


def test_importing_the_webhook_package_imports_no_framework() -> None:
    import subprocess_scripts

    result = subprocess_scripts.run("probes", "webhook_imports")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_probes_are_not_inspected(
    serve: Serve, otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    import http.client

    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    try:
        with serve(tracer_provider=handle.tracer_provider) as port:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/raw")
            assert connection.getresponse().read() == b"got 0 bytes"
            connection.close()
        handle.force_flush(10)
    finally:
        handle.shutdown(5)
    [span] = otlp_receiver.wait_for_spans(1)
    assert span.name == "GET"
    assert "admission.problems" not in span.attributes


# --- the WSGI body contract (PEP 3333), called directly -------------------------------------


class _Stream:
    """A wsgi.input that hands out data in small pieces, as a socket does, or refuses to be read."""

    def __init__(self, data: bytes, *, refuse: bool = False) -> None:
        self._data, self._refuse = data, refuse

    def read(self, size: int = -1) -> bytes:
        if self._refuse:
            raise AssertionError("the middleware read a stream it had no right to read")
        size = len(self._data) if size < 0 else min(size, 5)
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def _call_wsgi(middleware: WSGIMiddleware, environ: dict[str, Any]) -> bytes:
    result = middleware(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    stream = environ["wsgi.input"]
    return [stream.read()] if environ.get("wsgi.input_terminated") else [b""]


@pytest.fixture
def sampled_handle(otlp_receiver: OTLPReceiver) -> Iterator[TracingHandle]:
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    yield handle
    handle.shutdown(5)


@pytest.mark.parametrize("limit", [10_000, 16])
def test_chunked_bodies_are_replayed_whole(sampled_handle: TracingHandle, limit: int) -> None:
    body = json.dumps(review()).encode()
    middleware = WSGIMiddleware(_echo, tracer_provider=sampled_handle.tracer_provider, max_body_bytes=limit)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v",
        "wsgi.input": _Stream(body),
        "wsgi.input_terminated": True,
    }
    assert _call_wsgi(middleware, environ) == body


def test_a_stream_without_length_or_end_is_never_read(sampled_handle: TracingHandle) -> None:
    middleware = WSGIMiddleware(_echo, tracer_provider=sampled_handle.tracer_provider)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v", "wsgi.input": _Stream(b"", refuse=True)}
    assert _call_wsgi(middleware, environ) == b""


@pytest.mark.parametrize("workers", [["-w", "2"], ["-w", "2", "--worker-class", "gthread", "--threads", "8"]],
                         ids=["sync", "gthread"])  # fmt: skip
def test_gunicorn_preload_forked_workers_export(
    otlp_receiver: OTLPReceiver, apiserver: WebhookCaller, workers: list[str]
) -> None:
    # --preload: configure() runs in the master before the fork; each worker must build its own
    # exporter (a gRPC channel from before fork() is unusable in the child), and flush on exit.
    import os
    import signal
    import socket
    import time
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tests = Path(__file__).resolve().parent
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", *workers, "-b", f"127.0.0.1:{port}", "--chdir", str(tests),
         "gunicorn_app:app"],
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    if process.poll() is None:
                        process.kill()  # so that reading its stderr to the end cannot block
                        process.wait(10)
                    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    message = f"gunicorn did not come up (exit code {process.returncode}): {stderr[-2000:]}"
                    raise AssertionError(message) from None
                time.sleep(0.1)
        with ThreadPoolExecutor(max_workers=6) as pool:  # parallel: gthread serves them in threads
            calls = list(
                pool.map(lambda i: apiserver.call(port, json.dumps(review(uid=f"g-{i}")).encode()), range(6))
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert all(json.loads(c.body)["response"]["allowed"] for c in calls)
    spans = otlp_receiver.wait_for_spans(6 * 4)
    servers = {
        s.trace_id: s
        for s in spans
        if s.kind == "SERVER" and s.resource.get("service.name") == "gunicorn-webhook"
    }
    assert len(servers) == 6
    for index, call in enumerate(calls):
        assert servers[call.trace_id].parent_span_id == call.client_span_id
        assert servers[call.trace_id].attributes["UID"] == f"g-{index}"
    checks = [s for s in spans if s.name == "policy check"]
    assert sorted(c.parent_span_id for c in checks) == sorted(s.span_id for s in servers.values())


# --- the handler decorator ----------------------------------------------------------------------


def test_admission_handler_decorator() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from k8s_otel._sampling import PerMillionSampler
    from k8s_otel.webhook import admission_handler

    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=PerMillionSampler(1_000_000))
    provider.add_span_processor(SimpleSpanProcessor(memory))

    @admission_handler(tracer_provider=provider, webhook_type="validating")
    def validate(document: dict[str, Any]) -> dict[str, Any]:
        """The docstring stays."""
        if document["request"]["name"] == "explode":
            raise RuntimeError("policy engine down")
        uid = "wrong" if document["request"]["name"] == "bad-uid" else document["request"]["uid"]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }

    headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    assert validate(review(), headers=headers, path="/validate")["response"]["allowed"] is True
    validate(review(name="bad-uid"))
    with pytest.raises(RuntimeError, match="policy engine down"):
        validate(review(name="explode"))
    assert validate.__doc__ == "The docstring stays."
    served, bad, exploded = memory.get_finished_spans()
    assert (served.name, served.kind.name) == ("POST /validate", "SERVER")  # as the middlewares name it
    assert bad.name == "POST"  # no path given: the bare method, by the same rule
    assert served.parent is not None and served.parent.span_id == 0x00F067AA0BA902B7
    assert (
        served.attributes is not None and served.attributes["UID"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    )
    assert served.attributes["response.allowed"] is True
    assert bad.kind.name == "INTERNAL" and bad.parent is None
    assert bad.attributes is not None
    assert (
        'expected response.uid="705ab4f5-6393-11e8-b7cc-42010a800002", got "wrong"'
        in bad.attributes["admission.problems"]
    )
    assert exploded.status.status_code.name == "ERROR"
    assert exploded.attributes is not None and exploded.attributes["error.type"] == "RuntimeError"


def test_the_docs_list_every_attribute_key() -> None:
    from pathlib import Path

    from doc_tables import rows, section, tokens
    from k8s_otel.webhook._core import attribute_keys

    docs = (Path(__file__).resolve().parents[1] / "docs" / "webhooks.md").read_text()
    # A whole token in the key column of a table under "### Attributes", not just anywhere:
    # `name` and `kind` are common words, and `request.resource` holds `resource`.
    keys = set().union(*(tokens(row[0]) for row in rows(section(docs, "### Attributes"))))
    assert len(keys) >= 10
    assert [key for key in attribute_keys() if key not in keys] == []


# --- issue 11: secrets, sizes, bodies -----------------------------------------------------------


@pytest.mark.parametrize("opt_in", [False, True])
def test_app_exception_text_is_opt_in(
    serve: Serve,
    apiserver: WebhookCaller,
    otlp_receiver: OTLPReceiver,
    webhook_tracing: TracingHandle,
    opt_in: bool,
) -> None:
    with serve(record_exception_messages=opt_in) as port:
        call = apiserver.call(port, json.dumps(review()).encode(), path="/boom-secret")
    assert call.status == 500
    server = webhook_span(spans_of(otlp_receiver, webhook_tracing, 3))
    [(name, attributes)] = server.events
    assert (name, attributes["exception.type"]) == ("exception", "ValueError")
    assert "Traceback (most recent call last)" in attributes["exception.stacktrace"]
    recorded = json.dumps([server.attributes, server.events, server.status_message], default=str)
    assert (SECRET_VALUE in recorded) is opt_in
    if not opt_in:
        assert server.status_message == "ValueError"


def test_a_5_mib_name_does_not_lose_the_batch(
    otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    # One batch: the spans before and after the huge request must all arrive (gRPC's 4 MiB limit).
    from k8s_otel._trust import SampledParentBudget, TrustPolicy

    policy = TrustPolicy("trust", budget=SampledParentBudget(1000))
    middleware = WSGIMiddleware(make_wsgi_app(webhook_tracing.tracer_provider),
                                tracer_provider=webhook_tracing.tracer_provider, trust=policy)  # fmt: skip
    names = ["before-1", "before-2", "n" * (5 << 20), "after-1", "after-2"]
    for index, name in enumerate(names):
        body = json.dumps(review(uid=f"u{index}", name=name)).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/validate", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "HTTP_TRACEPARENT": f"00-{index + 1:032x}-00f067aa0ba902b7-01",
        }  # fmt: skip
        result = middleware(environ, lambda *args: None)
        b"".join(result)
        result.close()  # type: ignore[attr-defined]
    spans = spans_of(otlp_receiver, webhook_tracing, 10)
    servers = {s.attributes["UID"]: s for s in spans if s.kind == "SERVER"}
    assert sorted(servers) == [f"u{i}" for i in range(5)]
    assert len(servers["u2"].attributes["name"]) == 253
    assert len([s for s in spans if s.name == "policy check"]) == 5


def _raw_request(port: int, head: bytes, body: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def _length_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Reads the body as werkzeug/Flask do: to the end of a terminated input, else CONTENT_LENGTH."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        data = stream.read()
    else:
        data = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [f"{len(data)} {hash(data)}".encode()]


def test_chunked_wins_over_content_length_under_werkzeug(
    sampled_handle: TracingHandle, otlp_receiver: OTLPReceiver
) -> None:
    payload = json.dumps(review(object={"data": "x" * 1500})).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 100]), payload[i : i + 100])
        for i in range(0, len(payload), 100)
    )
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
    )
    answers = []
    for wrap in (False, True):
        app: Any = (
            WSGIMiddleware(_length_app, tracer_provider=sampled_handle.tracer_provider)
            if wrap
            else _length_app
        )
        with wsgi_server(app) as port:
            answers.append(_raw_request(port, head, chunks + b"0\r\n\r\n").partition(b"\r\n\r\n")[2])
    assert answers[0] == answers[1]
    assert str(len(payload)).encode() + b" " in answers[0]  # all 2,351 bytes, not 5
    sampled_handle.force_flush(10)
    [span] = otlp_receiver.wait_for_spans(1)
    assert span.attributes["UID"] == "705ab4f5-6393-11e8-b7cc-42010a800002"


def _long_stream_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "application/json")])

    def body() -> Iterator[bytes]:
        import time

        for _ in range(400):
            time.sleep(0.002)
            yield b"x" * 65536

    return body()


def _long_stream_asgi() -> Any:
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chunks() -> Any:
        for _ in range(400):
            await asyncio.sleep(0.002)
            yield b"x" * 65536

    async def endpoint(request: Any) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/json")

    return Starlette(routes=[Route("/validate", endpoint, methods=["POST"])])


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_a_client_disconnect_is_the_same_under_wsgi_and_asgi(
    sampled_handle: TracingHandle, otlp_receiver: OTLPReceiver, kind: str
) -> None:
    import socket
    import time

    from k8s_otel._trust import SampledParentBudget, TrustPolicy

    options: dict[str, Any] = {
        "tracer_provider": sampled_handle.tracer_provider,
        "trust": TrustPolicy("trust", budget=SampledParentBudget(1000)),
    }
    server = (
        wsgi_server(WSGIMiddleware(_long_stream_wsgi, **options))
        if kind == "wsgi"
        else asgi_server(ASGIMiddleware(_long_stream_asgi(), **options))
    )
    body = json.dumps(review()).encode()
    with server as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        for _ in range(150):  # the server notices the reset on its next write, then ends the span
            sampled_handle.force_flush(10)
            if otlp_receiver.spans():
                break
            time.sleep(0.1)
        [span] = otlp_receiver.spans()
    assert span.status_code == "UNSET"
    assert not span.events
    assert "error.type" not in span.attributes
    assert span.attributes["admission.problems"] == (
        "the client disconnected before the response was complete",
    )


def test_unsampled_streams_under_werkzeug_keep_the_apiservers_trace(
    otlp_receiver: OTLPReceiver, webhook_tracing: TracingHandle
) -> None:
    from opentelemetry import trace

    seen: list[str] = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json")])

        def body() -> Iterator[bytes]:
            for _ in range(5):
                seen.append(f"{trace.get_current_span().get_span_context().trace_id:032x}")
                yield b"{}"[:1] if len(seen) < 5 else b"}"

        return body()

    quiet = WebhookCaller(OTLPSpanExporter(endpoint=otlp_receiver.endpoint, insecure=True), sampled=False)
    try:
        with wsgi_server(WSGIMiddleware(streaming, tracer_provider=webhook_tracing.tracer_provider)) as port:
            call = quiet.call(port, json.dumps(review()).encode())
    finally:
        quiet.provider.shutdown()
    assert call.body == b"{{{{}"
    assert seen == [call.trace_id] * 5  # not five new traces started by the sampler


@pytest.mark.parametrize(
    ("method", "target", "name"),
    [
        ("POST", "/validate", "POST /validate"),
        ("POST", None, "POST"),
        ("GET", "/healthz/{probe}", "GET /healthz/{probe}"),  # a matched route
        ("GET", None, "GET"),  # a path alone is not a GET's target: unbounded cardinality
        ("BREW", "/pot", "HTTP /pot"),  # a method the convention does not know
        ("POST", "/" + "v" * 500, "POST /" + "v" * 127),
    ],
)
def test_one_span_name_rule_for_every_entry_point(method: str, target: str | None, name: str) -> None:
    from k8s_otel.webhook._core import span_name

    assert span_name(method, target) == name
