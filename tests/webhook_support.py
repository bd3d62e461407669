"""Test support for the webhook wrappers: example webhooks, real servers, and kube-apiserver's webhook call.

``WebhookCaller`` calls a webhook as kube-apiserver's dispatcher does (kubernetes-tracing.md §4): a
``Call validating webhook`` span with the apiserver's attributes, an ``HTTP POST`` client span
inside it, ``traceparent`` injected, and a POST of the AdmissionReview with ``?timeout=10s``.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

# Copies of kubernetes/api testdata/HEAD (shared/fixtures/admission), kept here so the tests stand alone.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "admission"

SECRET_VALUE = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk"  # what a Secret's data holds: must never reach a span


def review(
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002", *, version: str = "v1", **request: Any
) -> dict[str, Any]:
    """A realistic AdmissionReview (the docs' example: an UPDATE of a Secret in my-namespace)."""
    body: dict[str, Any] = {
        "apiVersion": f"admission.k8s.io/{version}",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "requestKind": {"group": "", "version": "v1", "kind": "Secret"},
            "requestResource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "db-credentials",
            "namespace": "my-namespace",
            "operation": "UPDATE",
            "userInfo": {
                "username": "admin",
                "uid": "014fbff9a07c",
                "groups": ["system:authenticated", "my-admin-group"],
                "extra": {"some-key": ["some-value1", "some-value2"]},
            },
            "object": {"apiVersion": "v1", "kind": "Secret", "data": {"password": SECRET_VALUE}},
            "oldObject": {"apiVersion": "v1", "kind": "Secret", "data": {"password": SECRET_VALUE}},
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
            "dryRun": False,
        },
    }
    body["request"].update(request)
    return body


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decide(document: dict[str, Any], mutate: bool = False) -> dict[str, Any]:
    """The example webhook's policy: deny objects labelled ``deny``, else allow (and label if mutating)."""
    request = document.get("request") or {}
    labels = ((request.get("object") or {}).get("metadata") or {}).get("labels") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": "deny" not in labels}
    if not response["allowed"]:
        response["status"] = {"code": 403, "message": "labelled deny"}
        response["warnings"] = ["denied by the example policy"]
    elif mutate:
        patch = [{"op": "add", "path": "/metadata/labels/traced", "value": "yes"}]
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": document.get("apiVersion"), "kind": "AdmissionReview", "response": response}


def make_wsgi_app(provider: Optional[trace.TracerProvider] = None) -> Callable[..., list[bytes]]:
    """A plain WSGI webhook: /validate, /mutate, /boom (raises), /fail (500), /stream, /echo-bad-uid."""
    tracer = trace.get_tracer("example", tracer_provider=provider)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return _wsgi(tracer, environ, start_response)

    return app


def _wsgi(tracer: trace.Tracer, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ["PATH_INFO"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if path == "/boom":
        raise RuntimeError("handler failed")
    if path == "/boom-secret":  # an app exception that quotes the admitted object
        raise ValueError(f"invalid literal for int() with base 10: {SECRET_VALUE!r}")
    if path == "/fail":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"webhook internal server error"]
    if path == "/raw":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got ", str(len(body)).encode(), b" bytes"]
    with tracer.start_as_current_span("policy check"):
        document = json.loads(body)
        answer = decide(document, mutate=path == "/mutate")
    if path == "/echo-bad-uid":
        answer["response"]["uid"] = "123"
    if path == "/patch-no-type":
        answer = decide(document, mutate=True)
        del answer["response"]["patchType"]
    payload = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    if path == "/stream":
        return [payload[i : i + 7] for i in range(0, len(payload), 7)]
    return [payload]


def make_asgi_app(provider: Optional[trace.TracerProvider] = None) -> Callable[..., Any]:
    """The same webhook as ASGI, reading the body the way frameworks do."""
    tracer = trace.get_tracer("example", tracer_provider=provider)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _asgi(tracer, scope, receive, send)

    return app


async def _asgi(tracer: trace.Tracer, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("handler failed")
    if path == "/boom-secret":
        raise ValueError(f"invalid literal for int() with base 10: {SECRET_VALUE!r}")
    if path == "/fail":
        await send(
            {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"webhook internal server error"})
        return
    if path == "/raw":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": f"got {len(body)} bytes".encode()})
        return
    with tracer.start_as_current_span("policy check"):
        document = json.loads(body)
        answer = decide(document, mutate=path == "/mutate")
    if path == "/echo-bad-uid":
        answer["response"]["uid"] = "123"
    payload = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    if path == "/stream":
        for i in range(0, len(payload), 7):
            await send({"type": "http.response.body", "body": payload[i : i + 7], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.body", "body": payload})


@contextmanager
def wsgi_server(app: Any) -> Iterator[int]:
    """A real threaded werkzeug server on 127.0.0.1:0."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def asgi_server(app: Any) -> Iterator[int]:
    """A real uvicorn server on 127.0.0.1:0, in its own thread and event loop."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


@dataclass
class Call:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    trace_id: str
    call_span_id: str
    client_span_id: str


class WebhookCaller:
    """Calls a webhook as kube-apiserver does: spans as its dispatcher makes them, service "apiserver".

    Unlike the demo's ``APIServerSimulator`` it sends any bytes, content type and headers (or no
    ``traceparent``) and returns the raw answer with the ids of its spans, which the tests need."""

    def __init__(self, exporter: Any, *, sampled: bool = True) -> None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

        self.provider = TracerProvider(
            sampler=ALWAYS_ON if sampled else ALWAYS_OFF,
            resource=Resource.create({"service.name": "apiserver"}),
        )
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("k8s.io/component-base/tracing")

    def call(
        self,
        port: int,
        body: bytes,
        *,
        path: str = "/validate",
        webhook: str = "validating",
        content_type: str = "application/json",
        extra_headers: Optional[dict[str, str]] = None,
        inject_context: bool = True,
    ) -> Call:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        request = (document.get("request") or {}) if isinstance(document, dict) else {}
        resource = request.get("resource") or {}
        attributes = {
            "configuration": "example-policy",
            "webhook": f"{webhook}.example.com",
            "resource": f"{resource.get('group', '')}/{resource.get('version', '')}, Resource={resource.get('resource', '')}",
            "subresource": request.get("subResource", ""),
            "operation": request.get("operation", ""),
            "UID": request.get("uid", ""),
        }
        with self.tracer.start_as_current_span(f"Call {webhook} webhook", attributes=attributes) as call_span:
            with self.tracer.start_as_current_span("HTTP POST", kind=SpanKind.CLIENT) as client_span:
                headers = {"Content-Type": content_type, "Accept": "application/json, */*"}
                if inject_context:
                    inject(headers)
                headers.update(extra_headers or {})
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    connection.request("POST", f"{path}?timeout=10s", body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                    result = Call(
                        status=response.status,
                        headers=[
                            (k.lower(), v)
                            for k, v in response.getheaders()
                            if k.lower() not in ("date", "server")
                        ],
                        body=payload,
                        trace_id=f"{call_span.get_span_context().trace_id:032x}",
                        call_span_id=f"{call_span.get_span_context().span_id:016x}",
                        client_span_id=f"{client_span.get_span_context().span_id:016x}",
                    )
                finally:
                    connection.close()
            call_span.add_event("Request completed")
        return result
