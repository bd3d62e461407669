"""WSGI admission-webhook middleware (gunicorn, werkzeug, Flask, any PEP 3333 server)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace

from k8s_otel._admission import ReviewRequest
from k8s_otel._attributes import PROBLEMS
from k8s_otel._trust import Caller
from k8s_otel.webhook._core import (
    NOT_READ,
    WebhookMiddleware,
    detach,
    http_server_attributes,
    is_recording,
    name_after_route,
)
from k8s_otel.webhook._tls import wsgi_client_subject

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
    """Read the request body for inspection and put a replay in its place. None: too large.

    The app must see exactly the bytes it would see without us. A terminated input (chunked
    Transfer-Encoding, or a server such as gunicorn that ends every body) is read to its end
    whatever CONTENT_LENGTH says: Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), and
    the server gives the app everything up to the end. CONTENT_LENGTH is never changed.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        body = _read_up_to(stream, limit + 1)
        if len(body) > limit:
            environ["wsgi.input"] = io.BufferedReader(_ChainedInput(body, stream))
            return None
        environ["wsgi.input"] = io.BytesIO(body)
        return body
    length_text = environ.get("CONTENT_LENGTH") or ""
    if not length_text.isdigit():
        return b""  # PEP 3333: no CONTENT_LENGTH and no terminated input: there is no body to read
    length = int(length_text)
    if length > limit:
        return None  # left as it is: the app reads the original stream
    body = _read_up_to(stream, length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class _ContextUntilClose:
    """Unsampled: keeps the incoming context current while the server iterates the response, so
    spans made while streaming keep kube-apiserver's (unsampled) parent; detaches on close."""

    __slots__ = ("_closed", "_iterable", "_token")

    def __init__(self, iterable: Iterable[bytes], token: object) -> None:
        self._iterable = iterable
        self._token = token
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            detach(self._token)


class _TracedResponse:
    """Passes the app's response through unchanged, keeps a bounded copy, ends the span on close.

    A response the server stopped taking before its end (the client went away: the server closes
    us mid-iteration, which shows as GeneratorExit) is recorded as a disconnect, not as an error.
    """

    def __init__(
        self,
        iterable: Iterable[bytes],
        owner: WSGIMiddleware,
        span: trace.Span,
        review: ReviewRequest,
        status: list[Optional[int]],
        token: object,
        environ: dict[str, Any],
    ) -> None:
        self._iterable = iterable
        self._owner = owner
        self._span = span
        self._review = review
        self._status = status
        self._token = token
        self._environ = environ
        # A copy is kept only when there is a review to check the response against.
        self._chunks: Optional[list[bytes]] = [] if review.is_review else None
        self._size = 0
        self._error: Optional[BaseException] = None
        self._exhausted = False
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
            self._exhausted = True
        except GeneratorExit:  # the server stopped iterating: the client is gone
            raise
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
            tracer = self._owner.tracer
            body = b"".join(self._chunks) if self._chunks is not None else None
            self._owner.name_after_route(self._span, self._environ)
            tracer.finish(
                self._span,
                self._review,
                status=self._status[0],
                body=body,
                error=self._error,
                disconnected=self._error is None and not self._exhausted,
            )
            detach(self._token)


def _caller(environ: dict[str, Any]) -> Caller:
    return Caller(
        request=environ,
        peer_address=environ.get("REMOTE_ADDR") or None,
        client_subject=wsgi_client_subject(environ),
    )


class WSGIMiddleware(WebhookMiddleware):
    """Wrap a WSGI admission webhook: ``app.wsgi_app = WSGIMiddleware(app.wsgi_app)`` (options: WebhookMiddleware)."""

    app: WSGIApp
    #: Set by framework helpers: the matched route template of a finished request (Flask's url_rule).
    route_of: Optional[Callable[[dict[str, Any]], Optional[str]]] = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        tracer = self.tracer
        try:
            method = environ.get("REQUEST_METHOD", "")
            span, ctx = tracer.start(
                method,
                environ.get("PATH_INFO", ""),
                environ.get("HTTP_TRACEPARENT"),
                environ.get("HTTP_TRACESTATE"),
                environ.get("HTTP_BAGGAGE"),
                environ.get("k8s_otel.route"),
                (lambda: _caller(environ)) if tracer.policy.mode == "rule" else None,
            )
            token = otel_context.attach(ctx)
        except Exception:  # tracing must never stop a webhook
            return self.app(environ, start_response)
        if not is_recording(span):
            # Unsampled: the request goes through untouched; only the context is made current,
            # until the server closes the response (a generator body runs after we return).
            try:
                result = self.app(environ, start_response)
            except BaseException:
                detach(token)
                raise
            if type(result) is list or type(result) is tuple:
                detach(token)  # nothing of the app's runs after this
                return result
            return _ContextUntilClose(result, token)
        return self._traced(environ, start_response, method, span, token)

    def name_after_route(self, span: trace.Span, environ: dict[str, Any]) -> None:
        """Once the framework has matched the route, name the span after its template."""
        route_of = self.route_of
        if route_of is None:
            return
        try:
            route = route_of(environ)
        except Exception:  # a broken route lookup: keep the name we have
            return
        name_after_route(span, environ.get("REQUEST_METHOD", ""), route)

    def _traced(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        method: str,
        span: trace.Span,
        token: object,
    ) -> Iterable[bytes]:
        tracer = self.tracer
        status: list[Optional[int]] = [None]
        review = NOT_READ
        try:
            http = _attributes(environ, method)
            inspect, problem = tracer.inspection(
                method, environ.get("PATH_INFO", ""), environ.get("CONTENT_TYPE")
            )
            if inspect:
                review = tracer.record_request(span, _read_body(environ, tracer.max_body_bytes), http)
            else:
                span.set_attributes(http)
                review = tracer.not_inspected(span, problem)
        except Exception as error:  # an unreadable body: the app sees the same error on its own read
            problem = f"request body could not be read: {type(error).__name__}"
            with contextlib.suppress(Exception):  # a broken span: the request goes on regardless
                span.set_attribute(PROBLEMS, (problem,))
            review = ReviewRequest(problems=(problem,))

        def traced_start_response(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            code = status_line.split(" ", 1)[0]
            status[0] = int(code) if code.isdigit() and len(code) == 3 else None
            if exc_info is not None:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        try:
            iterable = self.app(environ, traced_start_response)
        except BaseException as error:
            self.name_after_route(span, environ)
            tracer.finish(span, review, status=status[0], body=None, error=error)
            detach(token)
            raise
        return _TracedResponse(iterable, self, span, review, status, token, environ)


def _port(value: Any) -> Optional[int]:
    text = str(value)
    return int(text) if text.isdigit() and len(text) <= 5 else None


def _attributes(environ: dict[str, Any], method: str) -> dict[str, Any]:
    protocol = str(environ.get("SERVER_PROTOCOL", ""))
    return http_server_attributes(
        method=method,
        scheme=environ.get("wsgi.url_scheme", "http"),
        path=environ.get("PATH_INFO", ""),
        query=environ.get("QUERY_STRING", ""),
        host=environ.get("HTTP_HOST"),
        server=(environ.get("SERVER_NAME", ""), _port(environ.get("SERVER_PORT", ""))),
        client=(environ["REMOTE_ADDR"], _port(environ.get("REMOTE_PORT", "")))
        if environ.get("REMOTE_ADDR")
        else None,
        user_agent=environ.get("HTTP_USER_AGENT"),
        protocol_version=protocol.partition("/")[2] or None,
        route=environ.get("k8s_otel.route"),
    )
