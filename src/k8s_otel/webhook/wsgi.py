"""WSGI admission-webhook middleware (gunicorn, werkzeug, Flask, any PEP 3333 server)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace

from k8s_otel.admission import ReviewRequest
from k8s_otel.webhook._core import (
    HTTPRequest,
    WebhookMiddleware,
    detach,
    http_server_attributes,
)

__all__ = ["WSGIMiddleware"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ChainedInput(io.RawIOBase):
    """The bytes already read, then the rest of the original stream: nothing is lost."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._head.read(len(buffer)) or self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_up_to(stream: Any, size: int) -> bytes:
    """Read until ``size`` bytes or the end: a socket-backed ``read(n)`` may return less than n."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_body(environ: dict[str, Any], limit: int) -> Optional[bytes]:
    """Read the request body for inspection and put a replay in its place. None: too large."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length_text = environ.get("CONTENT_LENGTH") or ""
    if length_text.isdigit():
        length = int(length_text)
        if length > limit:
            return None  # left as it is: the app reads the original stream
        body = _read_up_to(stream, length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""  # PEP 3333: with no CONTENT_LENGTH and no terminated input, there is no body to read
    # No length, but the server ends the stream (chunked): read up to the limit, chain the rest.
    body = _read_up_to(stream, limit + 1)
    if len(body) > limit:
        environ["wsgi.input"] = io.BufferedReader(_ChainedInput(body, stream))
        return None
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


class _TracedResponse:
    """Passes the app's response through unchanged, keeps a bounded copy, ends the span on close."""

    def __init__(
        self,
        iterable: Iterable[bytes],
        owner: WSGIMiddleware,
        span: trace.Span,
        review: ReviewRequest,
        status: list[Optional[int]],
        token: object,
    ) -> None:
        self._iterable = iterable
        self._owner = owner
        self._span = span
        self._review = review
        self._status = status
        self._token = token
        self._chunks: Optional[list[bytes]] = []
        self._size = 0
        self._error: Optional[BaseException] = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        limit = self._owner.tracer.max_body_bytes
        try:
            for chunk in self._iterable:
                if self._chunks is not None:
                    self._size += len(chunk)
                    if self._size > limit:
                        self._chunks = None
                    else:
                        self._chunks.append(chunk)
                yield chunk
        except BaseException as error:
            self._error = error
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            body = b"".join(self._chunks) if self._chunks is not None else None
            self._owner.tracer.finish(
                self._span, self._review, status=self._status[0], body=body, error=self._error
            )
            detach(self._token)


class WSGIMiddleware(WebhookMiddleware):
    """Wrap a WSGI admission webhook: ``app.wsgi_app = WSGIMiddleware(app.wsgi_app)`` (options: WebhookMiddleware)."""

    app: WSGIApp

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            request = HTTPRequest(
                method=environ.get("REQUEST_METHOD", ""),
                path=environ.get("PATH_INFO", ""),
                query=environ.get("QUERY_STRING", ""),
                traceparent=environ.get("HTTP_TRACEPARENT"),
                tracestate=environ.get("HTTP_TRACESTATE"),
                baggage=environ.get("HTTP_BAGGAGE"),
            )
            span, ctx = self.tracer.start(request, environ.get("k8s_otel.route"))
        except Exception:  # tracing must never stop a webhook
            return self.app(environ, start_response)
        token = otel_context.attach(ctx)
        if not span.is_recording():
            # Unsampled: the request goes through untouched; only the context is made current.
            try:
                return self.app(environ, start_response)
            finally:
                detach(token)
        return self._traced(environ, start_response, request, span, token)

    def _traced(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        request: HTTPRequest,
        span: trace.Span,
        token: object,
    ) -> Iterable[bytes]:
        status: list[Optional[int]] = [None]
        review = ReviewRequest()
        try:
            span.set_attributes(_attributes(environ, request))
            if request.method == "POST":  # kube-apiserver only POSTs; probes and the like are left alone
                review = self.tracer.record_request(span, _read_body(environ, self.tracer.max_body_bytes))
        except Exception as error:  # an unreadable body: the app sees the same error on its own read
            span.set_attribute(
                "admission.problems", (f"request body could not be read: {type(error).__name__}",)
            )

        def traced_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            code = status_line.split(" ", 1)[0]
            status[0] = int(code) if code.isdigit() else None
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        try:
            iterable = self.app(environ, traced_start_response)
        except BaseException as error:
            self.tracer.finish(span, review, status=status[0], body=None, error=error)
            detach(token)
            raise
        return _TracedResponse(iterable, self, span, review, status, token)


def _attributes(environ: dict[str, Any], request: HTTPRequest) -> dict[str, Any]:
    remote_port = str(environ.get("REMOTE_PORT", ""))
    server_port = str(environ.get("SERVER_PORT", ""))
    protocol = environ.get("SERVER_PROTOCOL", "")
    return http_server_attributes(
        method=request.method,
        scheme=environ.get("wsgi.url_scheme", "http"),
        path=request.path,
        query=request.query,
        host=environ.get("HTTP_HOST"),
        server=(environ.get("SERVER_NAME", ""), int(server_port) if server_port.isdigit() else None),
        client=(environ["REMOTE_ADDR"], int(remote_port) if remote_port.isdigit() else None)
        if environ.get("REMOTE_ADDR")
        else None,
        user_agent=environ.get("HTTP_USER_AGENT"),
        protocol_version=protocol.partition("/")[2] or None,
        route=environ.get("k8s_otel.route"),
    )
