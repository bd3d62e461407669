"""Canary strings: a credential given to the package in any of the usual wrong ways never comes out.

Each scenario runs with every Python logger at DEBUG (grpc, urllib3, requests, opentelemetry,
k8s_otel, root) and the process's stdout/stderr captured at the file-descriptor level, where gRPC
core writes its own log (at the verbosity it read at import: errors such as an invalid metadata
value are always written), exports through the real exporters to a real receiver, and hands back what it saw. Then no
canary may appear in any log record, any exported span or resource, or any CLI output.

``test_nothing_the_process_emits_holds_a_canary`` runs every scenario in one process, OTLP/HTTP
and gRPC: a token with a trailing newline, a colon-form header, userinfo in the endpoint, a
Secret's data in an AdmissionReview through the WSGI and ASGI middleware and ``admission_handler``
(the app's exception quotes it), a kube-apiserver error that echoes a canary (kubernetes and
kubernetes_asyncio ``ApiException``), and a kopf handler error that carries one. The loggers of
kopf and of the kubernetes clients' REST layer print such text by their own design; they are
kept apart (``THEIR_OWN``), and the test checks that the canaries did reach them, and only them.

To add a scenario, write a function that takes a
``Capture`` and records what the process emitted with ``capture.add(...)``, and add it to
``SCENARIOS``.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import k8s_otel
from k8s_otel.cli import main as cli_main
from k8s_otel.cli._receiver import OTLPReceiver

# Credential-looking canaries, one per way a secret is handed over.
TOKEN = "dG9rZW4tY2FuYXJ5LTExMTExMTExMTE"  # a bearer token read from a file, trailing newline
BASIC = "YmFzaWMtY2FuYXJ5LTIyMjIyMjIyMjI"  # a colon-form header
PASSWORD = "cGFzc3dvcmQtY2FuYXJ5LTMzMzMzMzM"  # userinfo in the endpoint
INNER = "aW5uZXItY2FuYXJ5LTQ0NDQ0NDQ0NDQ"  # a value with a newline inside

LOGGERS = ("", "grpc", "urllib3", "requests", "opentelemetry", "k8s_otel", "kopf", "kubernetes",
           "kubernetes_asyncio", "aiohttp", "asyncio")  # fmt: skip


@dataclass
class Capture:
    """Everything a scenario saw the process emit, plus what reached the collector on the wire."""

    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    receiver: OTLPReceiver
    texts: list[str] = field(default_factory=list)
    their_own: list[str] = field(default_factory=list)  # records of THEIR_OWN loggers, kept apart
    expect_their_own: tuple[str, ...] = ()  # canaries the libraries' own loggers must have printed
    sent_headers: list[dict[str, str]] = field(default_factory=list)

    def add(self, *texts: str) -> None:
        self.texts.extend(texts)


class _HTTPReceiver(http.server.BaseHTTPRequestHandler):
    """A tiny OTLP/HTTP receiver: records each POST's headers and spans."""

    received: ClassVar[list[tuple[dict[str, str], ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_receiver() -> Iterator[tuple[int, list[tuple[dict[str, str], ExportTraceServiceRequest]]]]:
    handler: type[_HTTPReceiver] = type("Handler", (_HTTPReceiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.received
    finally:
        server.shutdown()
        server.server_close()


def _export_one_span(handle: k8s_otel.TracingHandle, capture: Capture) -> None:
    tracer = handle.tracer_provider.get_tracer("canary")
    with tracer.start_as_current_span("canary-span"):
        pass
    assert handle.force_flush(10)
    capture.add(
        repr(handle), repr(handle.settings), str(handle.settings.as_dict()), *handle.settings.problems
    )


# The env a careless deployment gives: a token file's content with its newline, a header pasted in
# "Name: value" form, another with a newline inside, and the password in the endpoint.
HEADERS_ENV = f"X-Basic: Basic {BASIC}==,authorization=Bearer%20{TOKEN}%0A,x-inner=a%0A{INNER}"


def grpc_export(capture: Capture) -> None:
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
    capture.monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://collector:{PASSWORD}@{capture.receiver.endpoint}"
    )
    handle = k8s_otel.configure(install=False, sampling_rate_per_million=1_000_000)
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
        assert all(headers.get("authorization") for headers in capture.sent_headers)
        capture.add(*(repr(span) for span in capture.receiver.spans()))
    finally:
        handle.shutdown()


def grpc_export_with_a_token_argument(capture: Capture) -> None:
    # A header argument that cannot be sent is a code error: refused, its value never in the message.
    with pytest.raises(k8s_otel.InvalidArgumentError) as refused:
        k8s_otel.configure(
            install=False, headers={"authorization": f"Bearer {TOKEN}\n", "x-inner": f"a\n{INNER}"}
        )
    capture.add(str(refused.value), repr(refused.value), repr(refused.value.args))
    handle = k8s_otel.configure(
        install=False,
        sampling_rate_per_million=1_000_000,
        endpoint=f"dns://u:{PASSWORD}@{capture.receiver.endpoint}",
        headers={"authorization": f"Bearer {TOKEN}\n"},
    )
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
    finally:
        handle.shutdown()


def grpc_export_with_every_header_refused(capture: Capture) -> None:
    # With nothing left to send, the stock exporter must still not read the variable itself.
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"X-Basic: Basic {BASIC}==,x-inner=a%0A{INNER}")
    handle = k8s_otel.configure(
        install=False, sampling_rate_per_million=1_000_000, endpoint=capture.receiver.endpoint
    )
    try:
        _export_one_span(handle, capture)
        assert capture.receiver.wait_for_spans(1)
        capture.sent_headers.extend(dict(request.metadata) for request in capture.receiver.requests)
        assert all("x-inner" not in headers for headers in capture.sent_headers)
    finally:
        handle.shutdown()


def make_http_export(port: int, received: list[tuple[dict[str, str], ExportTraceServiceRequest]]) -> Scenario:
    def http_export(capture: Capture) -> None:
        capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
        capture.monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://collector:{PASSWORD}@127.0.0.1:{port}"
        )
        handle = k8s_otel.configure(install=False, sampling_rate_per_million=1_000_000)
        try:
            _export_one_span(handle, capture)
            assert received, "the OTLP/HTTP receiver got nothing"
            capture.sent_headers.extend(headers for headers, _ in received)
            capture.add(*(str(request) for _, request in received))
        finally:
            handle.shutdown()

    return http_export


def doctor_and_validate(capture: Capture) -> None:
    capture.monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_ENV)
    good = capture.tmp_path / "good.yaml"
    good.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
        f"endpoint: dns://u:{PASSWORD}@{capture.receiver.endpoint}\n"
    )
    bad = capture.tmp_path / "bad.yaml"
    bad.write_text(
        f"apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n{TOKEN}: 1\n"
        f"endpoint: http://u:{PASSWORD}@host:4317\n"
    )
    broken = capture.tmp_path / "broken.yaml"
    broken.write_text(f"kind: {BASIC}\ntoken: [{TOKEN}\n")
    for argv in (
        ["doctor", "--config-file", str(good), "--timeout", "2"],
        ["doctor", "--config-file", str(good), "--timeout", "2", "--json"],
        ["doctor", "--endpoint", f"http://u:{PASSWORD}@{capture.receiver.endpoint}", "--timeout", "2"],
        ["validate", str(good), str(bad), str(broken)],
        ["validate", "--json", str(good), str(bad), str(broken)],
    ):
        out, err = io.StringIO(), io.StringIO()
        cli_main(argv, out=out, err=err)
        capture.add(out.getvalue(), err.getvalue())


# --- Webhooks, kopf and API errors: the admitted object's content, in every way it can come out ---

SECRET_DATA = "c2VjcmV0LWRhdGEtY2FuYXJ5LTU1NTU1NTU"  # a Secret's data, base64, in the admitted object
API_ECHO = "YXBpLWVjaG8tY2FuYXJ5LTY2NjY2NjY2Ng"  # what kube-apiserver's error body echoes back
KOPF_ERROR = "a29wZi1lcnJvci1jYW5hcnktNzc3Nzc3Nw"  # what a kopf handler's exception carries
OBJECT_CANARIES = (SECRET_DATA, API_ECHO, KOPF_ERROR)
# Loggers of the libraries themselves that print what they were given, by their own design and at
# the user's choice of level: kopf logs a failed handler's exception text and the API's error body;
# the kubernetes clients log every response body at DEBUG. Our instrumentation adds nothing to them
# (it never logs an error's text and never re-raises with a new message): the test checks that the
# canaries reach only these, and that they do reach them, so the exclusion cannot hide anything else.
THEIR_OWN = ("kopf", "kubernetes_asyncio.client.rest", "kubernetes.client.rest")
SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _secret_review() -> bytes:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
              "data": {"password": SECRET_DATA}}  # fmt: skip
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Secret"},
                    "resource": {"group": "", "version": "v1", "resource": "secrets"}, "name": "s",
                    "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
                    "object": secret, "oldObject": None, "dryRun": False},
    }).encode()  # fmt: skip


def _parse_secret(review: Any) -> int:
    """The app's own bug: it quotes the Secret's data in its exception text."""
    return int(review["request"]["object"]["data"]["password"])


def webhooks(capture: Capture) -> None:
    from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware, admission_handler

    handle = k8s_otel.configure(
        install=False, sampling_rate_per_million=1_000_000, endpoint=capture.receiver.endpoint
    )
    body = _secret_review()
    seen: list[bytes] = []
    try:
        provider = handle.tracer_provider

        def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
            _parse_secret(json.loads(seen[-1]))
            return []

        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/validate", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "HTTP_TRACEPARENT": SAMPLED,
                   "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https"}  # fmt: skip
        with pytest.raises(ValueError, match=SECRET_DATA):
            WSGIMiddleware(wsgi_app, tracer_provider=provider)(environ, lambda *a: None)

        async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
            seen.append((await receive())["body"])
            _parse_secret(json.loads(seen[-1]))

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            pass

        scope = {"type": "http", "method": "POST", "path": "/validate", "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"traceparent", SAMPLED.encode())]}  # fmt: skip
        with pytest.raises(ValueError, match=SECRET_DATA):
            asyncio.run(ASGIMiddleware(asgi_app, tracer_provider=provider)(scope, receive, send))

        @admission_handler(tracer_provider=provider)  # type: ignore[untyped-decorator]
        def handler(review: Any) -> Any:
            return _parse_secret(review)

        with pytest.raises(ValueError, match=SECRET_DATA):
            handler(json.loads(body), headers={"traceparent": SAMPLED})
        assert seen == [body, body]  # the apps saw the bytes that were sent
        assert handle.force_flush(10)
        spans = capture.receiver.wait_for_spans(3)
        assert sum(s.status_code == "ERROR" for s in spans) >= 3
        capture.add(*(repr(span) for span in spans))
    finally:
        handle.shutdown()


def kopf_and_api_errors(capture: Capture) -> None:
    import kopf
    import kubernetes
    import kubernetes_asyncio
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fake_cluster import FakeCluster
    from k8s_otel.instrumentation._kopf import KopfInstrumentor
    from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
    from test_instrumentation_kopf import EXAMPLES, Operator, example, wait_for

    handle = k8s_otel.configure(
        install=False, sampling_rate_per_million=1_000_000, endpoint=capture.receiver.endpoint
    )
    memory = InMemorySpanExporter()  # only to know when the operator is done
    provider = handle.tracer_provider
    assert isinstance(provider, SDKTracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentors = (KopfInstrumentor(), KubernetesClientInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=handle.tracer_provider)
    cluster = FakeCluster()
    try:
        with cluster.running():
            echo = f"etcd: value {API_ECHO} rejected"
            cluster.failures.extend([("GET", "/pods/p1", 500, echo), ("GET", "/pods/p2", 500, echo)])
            operator = Operator(cluster, memory)

            @kopf.on.create(*EXAMPLES, registry=operator.registry, id="reads", errors=kopf.ErrorsMode.IGNORED)
            async def reads(**_: Any) -> None:
                configuration = kubernetes_asyncio.client.Configuration(host=cluster.host)
                async with kubernetes_asyncio.client.ApiClient(configuration) as client:
                    await kubernetes_asyncio.client.CoreV1Api(client).read_namespaced_pod("p1", "default")

            @kopf.on.create(*EXAMPLES, registry=operator.registry, id="fails", errors=kopf.ErrorsMode.IGNORED)
            def fails(**_: Any) -> None:
                raise kopf.PermanentError(f"cannot use {KOPF_ERROR}")

            with operator.running():
                cluster.create("kopfexamples", example("ex1"))
                wait_for(lambda: len(operator.spans("kopf.on.create kopfexamples.kopf.dev")) >= 2)
            # The synchronous client, outside kopf: its ApiException carries the echoing body.
            configuration = kubernetes.client.Configuration(host=cluster.host)
            with (
                kubernetes.client.ApiClient(configuration) as client,
                pytest.raises(kubernetes.client.ApiException, match=API_ECHO),
            ):
                kubernetes.client.CoreV1Api(client).read_namespaced_pod("p2", "default")
        assert handle.force_flush(10)
        names = {s.name for s in capture.receiver.spans() if s.status_code == "ERROR"}
        assert "kopf.on.create kopfexamples.kopf.dev" in names
        assert "GET /api/v1/namespaces/{:namespace}/pods/{:name}" in names
        capture.add(*(repr(span) for span in capture.receiver.spans()))
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        handle.shutdown()


CANARIES = (TOKEN, BASIC, PASSWORD, INNER, *OBJECT_CANARIES)

Scenario = Callable[[Capture], None]
SCENARIOS: dict[str, Scenario] = {
    "grpc export, env": grpc_export,
    "grpc export, arguments": grpc_export_with_a_token_argument,
    "grpc export, every header refused": grpc_export_with_every_header_refused,
    "doctor and validate": doctor_and_validate,
    "webhooks: WSGI, ASGI, admission_handler": webhooks,
    "kopf and API errors": kopf_and_api_errors,
}


@pytest.fixture
def capture(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: OTLPReceiver,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Capture]:
    monkeypatch.setenv("K8S_OTEL_FS_ROOT", str(tmp_path))  # no pod files from the host
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    result = Capture(tmp_path=tmp_path, monkeypatch=monkeypatch, receiver=otlp_receiver)
    try:
        yield result
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    out, err = capfd.readouterr()
    formatter = logging.Formatter()
    # ``caplog.records`` here, at teardown, would be the teardown's records only: read the call's.
    for record in (*caplog.get_records("setup"), *caplog.get_records("call")):
        text = "\n".join((formatter.format(record), str(record.args), str(record.exc_info)))
        (result.their_own if record.name.startswith(THEIR_OWN) else result.texts).append(text)
    result.add(out, err)
    _assert_no_canary(result)


def _assert_no_canary(capture: Capture) -> None:
    emitted = "\n".join(capture.texts)
    theirs = "\n".join(capture.their_own)
    for canary in capture.expect_their_own:
        assert canary in theirs, f"{canary} never reached {THEIR_OWN}: the scenario did not run"
    for canary in CANARIES:
        assert canary not in emitted, f"canary {canary} leaked"
    # What was sent on the wire: the token, cleaned; nothing from the refused headers or the endpoint.
    for headers in capture.sent_headers:
        assert headers.get("authorization", f"Bearer {TOKEN}") == f"Bearer {TOKEN}"
        wire = " ".join(f"{k}={v}" for k, v in headers.items())
        assert BASIC not in wire and PASSWORD not in wire and INNER not in wire


def test_nothing_the_process_emits_holds_a_canary(
    capture: Capture, http_receiver: tuple[int, list[tuple[dict[str, str], ExportTraceServiceRequest]]]
) -> None:
    """Every scenario in one process, both exporters: the capture fixture then checks everything."""
    http_export = make_http_export(*http_receiver)
    for scenario in (http_export, *SCENARIOS.values()):
        capture.receiver.clear()
        with pytest.MonkeyPatch.context() as capture.monkeypatch:  # each scenario's env, its own
            scenario(capture)
        if scenario is http_export:
            assert capture.sent_headers and all(
                h.get("authorization") == f"Bearer {TOKEN}" for h in capture.sent_headers
            )
    capture.receiver.clear()
    # The exclusion of the libraries' own loggers hides nothing of ours, and the test can fail:
    # kopf and the clients did print what they were given (read at teardown, see ``capture``).
    capture.expect_their_own = OBJECT_CANARIES[1:]


def test_the_capture_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: a canary in a log line or on the wire is caught."""
    capture = Capture(tmp_path=tmp_path, monkeypatch=monkeypatch, receiver=OTLPReceiver())
    capture.add(f"ERROR something {TOKEN}")
    with pytest.raises(AssertionError, match="leaked"):
        _assert_no_canary(capture)
    capture.texts.clear()
    capture.sent_headers.append({"authorization": f"Bearer {TOKEN}", "x-basic": BASIC})
    with pytest.raises(AssertionError):
        _assert_no_canary(capture)
