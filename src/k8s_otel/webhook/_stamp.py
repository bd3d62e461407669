"""A mutating admission webhook that stamps the request's trace context into objects (KEP-5915).

No released kube-apiserver writes ``tracing.k8s.io/traceparent`` yet; this webhook does it on any
cluster. For a CREATE, and for an UPDATE of the main resource that changes more than ``status``
and metadata (labels count; annotations, finalizers, owner references and server-managed fields
do not), the response carries a JSONPatch that sets the annotation from the webhook's own span,
which the webhook middleware makes a child of kube-apiserver's ``Call mutating webhook`` span.
Every review is allowed: the webhook never blocks a write, and with ``failurePolicy: Ignore`` a
webhook that is down costs only the stamp.

Why annotation-only updates are never stamped: controllers keep their housekeeping in annotations
(kopf's progress records, ``kubectl.kubernetes.io/last-applied-configuration``), and kopf diffs
annotations, so stamping its own writes would make it reconcile its own stamp, forever.

``stamp_review`` is the pure decision; ``wsgi_app``/``asgi_app`` serve it behind the webhook
middleware; ``serve_https`` runs it over TLS (kube-apiserver calls webhooks over HTTPS only).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Iterable, Mapping, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from opentelemetry import trace
from opentelemetry.context import Context

from k8s_otel._propagation import TRACEPARENT, TRACESTATE, inject
from k8s_otel._trust import TrustArgument
from k8s_otel.objects import TRACEPARENT_ANNOTATION, TRACESTATE_ANNOTATION
from k8s_otel.webhook._wsgi import _read_body

__all__ = [
    "DEFAULT_PATH",
    "MAX_REVIEW_BYTES",
    "asgi_app",
    "make_https_server",
    "serve_https",
    "stamp_review",
    "wsgi_app",
]

_logger = logging.getLogger("k8s_otel.webhook.stamp")

DEFAULT_PATH = "/stamp"
#: Larger reviews are allowed unstamped without being parsed (etcd objects are at most about 1.5 MiB,
#: and an UPDATE carries two).
MAX_REVIEW_BYTES = 16 << 20
_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# Metadata that records no intent: written by the server, by garbage collection, or by tools.
_IGNORED_METADATA = frozenset(
    {
        "annotations",
        "creationTimestamp",
        "deletionGracePeriodSeconds",
        "deletionTimestamp",
        "finalizers",
        "generation",
        "managedFields",
        "ownerReferences",
        "resourceVersion",
        "selfLink",
        "uid",
    }
)


def _pointer(key: str) -> str:
    """A JSON pointer segment (RFC 6901): ``~`` as ``~0``, ``/`` as ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


_ANNOTATIONS = "/metadata/annotations"
_TRACEPARENT_PATH = f"{_ANNOTATIONS}/{_pointer(TRACEPARENT_ANNOTATION)}"
_TRACESTATE_PATH = f"{_ANNOTATIONS}/{_pointer(TRACESTATE_ANNOTATION)}"


def _intent(obj: Any) -> Any:
    """What of an object records intent: everything but ``status`` and the metadata above."""
    if not isinstance(obj, Mapping):
        return obj
    kept: dict[str, Any] = {key: value for key, value in obj.items() if key != "status"}
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        kept["metadata"] = {k: v for k, v in metadata.items() if k not in _IGNORED_METADATA}
    return kept


def _never(request: Mapping[str, Any]) -> bool:
    """Leases (leader election, node heartbeats) and events: never stamped, whatever the rules send."""
    resource = request.get("requestResource") or request.get("resource")
    if not isinstance(resource, Mapping):
        return False
    return resource.get("group") == "coordination.k8s.io" or resource.get("resource") == "events"


def _wants_stamp(request: Mapping[str, Any]) -> bool:
    """CREATE, or an UPDATE of the main resource that changes intent (the KEP's writer rules)."""
    if request.get("subResource") or request.get("requestSubResource") or _never(request):
        return False  # status, scale, binding, eviction, ...: never
    operation = request.get("operation")
    if operation == "CREATE":
        return isinstance(request.get("object"), Mapping)
    if operation == "UPDATE":
        new, old = request.get("object"), request.get("oldObject")
        return isinstance(new, Mapping) and isinstance(old, Mapping) and _intent(new) != _intent(old)
    return False  # DELETE, CONNECT, anything else


def _stamp_patch(obj: Mapping[str, Any], headers: Mapping[str, str]) -> list[dict[str, Any]]:
    """JSONPatch operations setting the stamp, valid whether or not the annotations exist."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    traceparent = headers[TRACEPARENT]
    tracestate = headers.get(TRACESTATE)
    if not isinstance(metadata, Mapping):
        value: dict[str, str] = {TRACEPARENT_ANNOTATION: traceparent}
        if tracestate:
            value[TRACESTATE_ANNOTATION] = tracestate
        return [{"op": "add", "path": "/metadata", "value": {"annotations": value}}]
    if not isinstance(annotations, Mapping):
        value = {TRACEPARENT_ANNOTATION: traceparent}
        if tracestate:
            value[TRACESTATE_ANNOTATION] = tracestate
        return [{"op": "add", "path": _ANNOTATIONS, "value": value}]  # also replaces a null
    operations: list[dict[str, Any]] = [{"op": "add", "path": _TRACEPARENT_PATH, "value": traceparent}]
    if tracestate:
        operations.append({"op": "add", "path": _TRACESTATE_PATH, "value": tracestate})
    elif TRACESTATE_ANNOTATION in annotations:
        operations.append({"op": "remove", "path": _TRACESTATE_PATH})  # it belonged to the old stamp
    return operations


def stamp_review(review: Mapping[str, Any], context: Optional[Context] = None) -> dict[str, Any]:
    """The AdmissionReview response for ``review``: always allowed, with the stamp when it is due.

    Same ``apiVersion`` (v1 or v1beta1) and ``uid`` as the request. The stamp is the span context of
    ``context`` (default: the current one, which the webhook middleware sets to the webhook's span);
    without a valid span context nothing is patched. Never raises.
    """
    api_version = review.get("apiVersion") if isinstance(review, Mapping) else None
    if api_version not in _VERSIONS:
        api_version = _VERSIONS[0]
    request = review.get("request") if isinstance(review, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    response: dict[str, Any] = {"uid": uid if isinstance(uid, str) else "", "allowed": True}
    try:
        if isinstance(request, Mapping) and _wants_stamp(request):
            headers: dict[str, str] = {}
            inject(headers, context)
            if TRACEPARENT in headers:
                patch = _stamp_patch(request["object"], headers)
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(
                    json.dumps(patch, separators=(",", ":")).encode()
                ).decode()
    except Exception:  # allowed, unstamped: the stamp is never worth a failed write
        _logger.debug("k8s_otel: no stamp for an admission review", exc_info=True)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


# --- the HTTP apps -----------------------------------------------------------------------------


def _answer(body: bytes) -> tuple[int, bytes]:
    """Status and JSON body for a POSTed review (400 for what is not an AdmissionReview)."""
    try:
        review = json.loads(body)
    except ValueError:
        return 400, b'{"error":"the body is not JSON"}'
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        return 400, b'{"error":"the body is not an AdmissionReview"}'
    return 200, json.dumps(stamp_review(review), separators=(",", ":")).encode()


def _middleware_options(
    tracer_provider: Optional[trace.TracerProvider], trust: TrustArgument
) -> dict[str, Any]:
    return {"tracer_provider": tracer_provider, "trust": trust, "webhook_type": "mutating"}


def _stamp_wsgi(path: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, route = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if method == "GET" and route in ("/healthz", "/readyz", "/livez"):
            status, body, content_type = "200 OK", b"ok", "text/plain"
        elif method != "POST" or route != path:
            status, body, content_type = "404 Not Found", b'{"error":"not found"}', "application/json"
        else:
            # The same body reading as the middleware's: a chunked (terminated) input is read to
            # its end, a socket's short reads are continued.
            received = _read_body(environ, MAX_REVIEW_BYTES)
            if received is None:
                status, body = "413 Request Entity Too Large", b'{"error":"the review is too large"}'
            else:
                code, body = _answer(received)
                status = "200 OK" if code == 200 else "400 Bad Request"
            content_type = "application/json"
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


def wsgi_app(
    *,
    path: str = DEFAULT_PATH,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
) -> Any:
    """The stamping webhook as a WSGI app, inside ``WSGIMiddleware`` (the span the stamp names).

    POST ``path`` takes an AdmissionReview; GET ``/healthz``, ``/readyz``, ``/livez`` answer ``ok``.
    """
    from k8s_otel.webhook._wsgi import WSGIMiddleware

    app = _stamp_wsgi(path)
    return WSGIMiddleware(app, **_middleware_options(tracer_provider, trust))


def asgi_app(
    *,
    path: str = DEFAULT_PATH,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
) -> Any:
    """The stamping webhook as an ASGI app (uvicorn, hypercorn), inside ``ASGIMiddleware``."""
    from k8s_otel.webhook._asgi import ASGIMiddleware

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope.get("type") == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope.get("type") != "http":
            return
        method, route = scope.get("method", ""), scope.get("path", "")
        if method == "GET" and route in ("/healthz", "/readyz", "/livez"):
            code, body, content_type = 200, b"ok", b"text/plain"
        elif method != "POST" or route != path:
            code, body, content_type = 404, b'{"error":"not found"}', b"application/json"
        else:
            chunks: list[bytes] = []
            size, more = 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_REVIEW_BYTES:
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            if size > MAX_REVIEW_BYTES:
                code, body = 413, b'{"error":"the review is too large"}'
            else:
                code, body = _answer(b"".join(chunks))
            content_type = b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return ASGIMiddleware(app, **_middleware_options(tracer_provider, trust))


# --- HTTPS -------------------------------------------------------------------------------------


class _WSGIHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (kube-apiserver reuses its connections) in front of a WSGI app."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # an idle or slow client holds a thread for at most this long
    server: _HTTPSServer

    def _handle(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self.send_error(411, "Length Required")  # kube-apiserver always sends Content-Length
            return
        length_text = self.headers.get("Content-Length", "") or "0"
        length = int(length_text) if length_text.isdigit() else -1
        if not 0 <= length <= MAX_REVIEW_BYTES:
            self.close_connection = True
            self.send_error(413, "Request Entity Too Large")
            return
        # Read whole, whatever the app reads: a keep-alive connection must be at the next request.
        data = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": self.headers.get("Content-Length", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(data),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        result = self.server.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug("k8s_otel stamp webhook: " + format, *args)


class _HTTPSServer(ThreadingHTTPServer):
    """TLS per connection in the connection's own thread, so one slow handshake stalls no one.

    Given the files, it reloads the certificate when they change (checked at most every
    ``RELOAD_SECONDS``), so a Secret that cert-manager renews is served without a restart.
    """

    daemon_threads = True
    RELOAD_SECONDS = 10.0

    def __init__(
        self,
        address: tuple[str, int],
        app: Any,
        context: ssl.SSLContext,
        files: Optional[tuple[str, str]] = None,
    ) -> None:
        self.app = app
        self.ssl_context = context
        self._files = files
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self._reload_lock = threading.Lock()
        super().__init__(address, _WSGIHandler)

    def _file_stamp(self) -> Optional[tuple[float, ...]]:
        if self._files is None:
            return None
        try:
            return tuple(os.stat(path).st_mtime for path in self._files)
        except OSError:
            return None

    def _current_context(self) -> ssl.SSLContext:
        if self._files is None or time.monotonic() - self._checked < self.RELOAD_SECONDS:
            return self.ssl_context
        with self._reload_lock:
            self._checked = time.monotonic()
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                try:
                    self.ssl_context = _tls_context(*self._files)
                    self._stamp = stamp
                    _logger.info("k8s_otel stamp webhook: reloaded the TLS certificate")
                except (OSError, ssl.SSLError) as error:  # half-written files: keep the old one, retry later
                    _logger.warning(
                        "k8s_otel stamp webhook: cannot reload the TLS certificate: %s", type(error).__name__
                    )
        return self.ssl_context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_WSGIHandler.timeout)
        try:
            connection = self._current_context().wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            _logger.debug("k8s_otel stamp webhook: TLS handshake failed", exc_info=True)
            return
        super().finish_request(connection, client_address)


def _tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def make_https_server(
    host: str,
    port: int,
    certfile: str,
    keyfile: str,
    *,
    path: str = DEFAULT_PATH,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
) -> ThreadingHTTPServer:
    """The stamping webhook on ``host:port`` over TLS, not yet serving (``serve_forever()``).

    A bad certificate or key raises ``ssl.SSLError``/``OSError`` here, at start-up.
    """
    return _HTTPSServer(
        (host, port),
        wsgi_app(path=path, tracer_provider=tracer_provider, trust=trust),
        _tls_context(certfile, keyfile),
        (certfile, keyfile),
    )


def serve_https(
    host: str,
    port: int,
    certfile: str,
    keyfile: str,
    *,
    path: str = DEFAULT_PATH,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
    ready: Optional[Callable[[tuple[str, int]], None]] = None,
) -> None:
    """Serve the stamping webhook over HTTPS until SIGTERM or SIGINT (``k8s-otel stamp``).

    ``ready`` is called with the bound address once the socket listens (port 0 picks one).
    """
    server = make_https_server(
        host, port, certfile, keyfile, path=path, tracer_provider=tracer_provider, trust=trust
    )
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stop)
    try:
        if ready is not None:
            address = server.server_address
            ready((str(address[0]), int(address[1])))
        server.serve_forever()
    finally:
        server.server_close()
        for number, handler in previous.items():
            signal.signal(number, handler)


def add_arguments(parser: Any) -> Any:
    """The options of ``python -m k8s_otel.webhook._stamp`` and ``k8s-otel stamp``, on ``parser``."""
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all, as in a pod)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", required=True, help="PEM certificate (tls.crt of the Secret)")
    parser.add_argument("--key", required=True, help="PEM private key (tls.key of the Secret)")
    parser.add_argument("--path", default=DEFAULT_PATH, help=f"the webhook's path (default {DEFAULT_PATH})")
    return parser


def parser() -> Any:
    """The command line of ``python -m k8s_otel.webhook._stamp``."""
    import argparse

    return add_arguments(
        argparse.ArgumentParser(
            prog="python -m k8s_otel.webhook._stamp",
            description="Serve the KEP-5915 stamping mutating admission webhook over HTTPS.",
        )
    )


def run(options: Any) -> int:
    """Configure tracing from the environment, then serve ``options`` (from ``add_arguments``)."""
    from opentelemetry.sdk.environment_variables import OTEL_SERVICE_NAME

    import k8s_otel

    # K8S_OTEL_TRACING_CONFIG and the OTEL_* variables apply; OTEL_SERVICE_NAME names the service.
    k8s_otel.configure(service_name=None if os.environ.get(OTEL_SERVICE_NAME) else "k8s-otel-stamp")
    serve_https(options.host, options.port, options.cert, options.key, path=options.path)
    return 0
