"""The stamping webhook's latency per admission: in-process, and over HTTPS as kube-apiserver calls it.

In-process (100 CREATE reviews of a Deployment per measurement, no sockets, the same provider with
spans dropped), sampled (a sampled ``traceparent`` from kube-apiserver) and unsampled:

- bare: the stamping logic written by hand, with a fixed traceparent and no tracing at all;
- stock: the same hand-written app under contrib's ``OpenTelemetryMiddleware`` (WSGI), stamping the
  current span with the stock ``TraceContextTextMapPropagator``: what a user writes without us;
- k8s_otel: ``k8s_otel.webhook._stamp.wsgi_app()``.

Over HTTPS (50 admissions on one keep-alive connection to 127.0.0.1, TLS 1.3, a self-signed
certificate): ``make_https_server`` with our app against the same server with the bare app (the
floor of any webhook call). Without the webhook kube-apiserver makes no call at all, so the
absolute figure is the latency the webhook adds to each admitted write.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from k8s_otel.webhook._stamp import _HTTPSServer, _tls_context, wsgi_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved

ROUNDS = int(os.environ.get("K8S_OTEL_BENCH_ROUNDS", "100"))

ADMISSIONS = 100
HTTPS_ADMISSIONS = 50
SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"
UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00"
PROVIDERS = {
    True: TracerProvider(sampler=ParentBased(ALWAYS_ON)),
    False: TracerProvider(sampler=ParentBased(ALWAYS_OFF)),
}
for _provider in PROVIDERS.values():
    _provider.add_span_processor(SpanProcessor())
STOCK = TraceContextTextMapPropagator()


def _review() -> bytes:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]},
            },
        },
    }
    request = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "web",
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


REVIEW = _review()


def _hand_written(traced: bool) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The stamping webhook written by hand: CREATE gets an ``add`` of the annotations."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        review = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        request = review["request"]
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if request["operation"] == "CREATE" and not request.get("subResource"):
            if traced:
                headers: dict[str, str] = {}
                STOCK.inject(headers)
                traceparent = headers.get("traceparent")
            else:
                traceparent = SAMPLED
            if traceparent:
                patch = [
                    {
                        "op": "add",
                        "path": "/metadata/annotations",
                        "value": {"tracing.k8s.io/traceparent": traceparent},
                    }
                ]
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        body = json.dumps(
            {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _app(implementation: str, provider: TracerProvider) -> Any:
    if implementation == "k8s_otel":
        return wsgi_app(tracer_provider=provider)
    if implementation == "stock":
        return OpenTelemetryMiddleware(_hand_written(True), tracer_provider=provider)
    return _hand_written(False)


def _call(app: Any, traceparent: str) -> bytes:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/stamp",
        "QUERY_STRING": "timeout=2s",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(REVIEW)),
        "HTTP_TRACEPARENT": traceparent,
        "HTTP_HOST": "k8s-otel-stamp.k8s-otel-stamp.svc:443",
        "REMOTE_ADDR": "10.0.0.1",
        "wsgi.input": io.BytesIO(REVIEW),
        "wsgi.url_scheme": "https",
        "wsgi.version": (1, 0),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_stamp_in_process(benchmark: Any, implementation: str, sampled: bool) -> None:
    benchmark.group = (
        f"stamp webhook in-process, {ADMISSIONS} CREATE admissions{'' if sampled else ', unsampled'}"
    )
    app = _app(implementation, PROVIDERS[sampled])
    traceparent = SAMPLED if sampled else UNSAMPLED

    def admissions() -> None:
        for _ in range(ADMISSIONS):
            _call(app, traceparent)

    benchmark(admissions)
    answer = json.loads(_call(app, traceparent))
    assert answer["response"]["allowed"] is True
    assert answer["response"]["patchType"] == "JSONPatch"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=stamp.test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture(params=["bare", "k8s_otel"])
def https_server(request: Any, certificate: tuple[str, str]) -> Iterator[tuple[str, int, str]]:
    app = _app(request.param, PROVIDERS[True])
    server = _HTTPSServer(("127.0.0.1", 0), app, _tls_context(*certificate))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield request.param, int(server.server_address[1]), certificate[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_stamp_over_https(benchmark: Any, https_server: tuple[str, int, str]) -> None:
    implementation, port, cert = https_server
    benchmark.group = f"stamp webhook over HTTPS, {HTTPS_ADMISSIONS} admissions on one connection"
    benchmark.name = implementation
    benchmark.extra_info["implementation"] = implementation
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=cert)
    )
    headers = {"Content-Type": "application/json", "traceparent": SAMPLED}

    def admissions() -> None:
        for _ in range(HTTPS_ADMISSIONS):
            connection.request("POST", "/stamp?timeout=2s", body=REVIEW, headers=headers)
            response = connection.getresponse()
            response.read()

    try:
        benchmark(admissions)
    finally:
        connection.close()


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_interleaved_in_process(benchmark: Any, sampled: bool) -> None:
    """bare, stock and ours in turn every round; the table row is printed (run with -s)."""
    traceparent = SAMPLED if sampled else UNSAMPLED
    apps = {name: _app(name, PROVIDERS[sampled]) for name in ("bare", "stock", "k8s_otel")}

    def variant(app: Any) -> Callable[[], None]:
        def admissions() -> None:
            for _ in range(ADMISSIONS):
                _call(app, traceparent)

        return admissions

    variants = {name: variant(app) for name, app in apps.items()}
    result = interleaved(variants, ROUNDS)
    benchmark.group = f"stamp webhook, interleaved, in-process{'' if sampled else ', unsampled'}"
    benchmark.extra_info.update(rounds=result.rounds, ratio=result.ratio, overhead=result.overhead)
    benchmark.pedantic(variants["k8s_otel"], rounds=3, iterations=1)
    print(
        "\n"
        + result.row(
            f"stamp webhook in-process{'' if sampled else ', unsampled'}, per admission", per=ADMISSIONS
        )
    )


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_interleaved_over_https(benchmark: Any, certificate: tuple[str, str], sampled: bool) -> None:
    """One keep-alive connection to each server (bare app, ours), 50 admissions each in turn.

    There is no stock stamping webhook; "stock" here is the bare app again, so the row's ratio
    columns are meaningless and its medians are what matter: the round trip per admission.
    """
    servers, connections = [], {}
    for name in ("bare", "k8s_otel"):
        server = _HTTPSServer(("127.0.0.1", 0), _app(name, PROVIDERS[sampled]), _tls_context(*certificate))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        connections[name] = http.client.HTTPSConnection(
            "127.0.0.1", server.server_address[1], context=ssl.create_default_context(cafile=certificate[0])
        )
    headers = {"Content-Type": "application/json", "traceparent": SAMPLED if sampled else UNSAMPLED}

    def variant(connection: http.client.HTTPSConnection) -> Callable[[], None]:
        def admissions() -> None:
            for _ in range(HTTPS_ADMISSIONS):
                connection.request("POST", "/stamp?timeout=2s", body=REVIEW, headers=headers)
                connection.getresponse().read()

        return admissions

    try:
        variants = {
            "bare": variant(connections["bare"]),
            "stock": variant(connections["bare"]),
            "k8s_otel": variant(connections["k8s_otel"]),
        }
        result = interleaved(variants, max(ROUNDS // 2, 10))
        benchmark.group = f"stamp webhook, interleaved, over HTTPS{'' if sampled else ', unsampled'}"
        benchmark.extra_info.update(rounds=result.rounds, medians=result.medians)
        benchmark.pedantic(variants["k8s_otel"], rounds=3, iterations=1)
        per = 1e6 / HTTPS_ADMISSIONS
        print(
            f"\n| stamp webhook over HTTPS{'' if sampled else ', unsampled'}, per admission | {result.rounds} | bare app "
            f"{result.medians['bare'] * per:.0f} µs | k8s_otel {result.medians['k8s_otel'] * per:.0f} µs |"
        )
    finally:
        for connection in connections.values():
            connection.close()
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
