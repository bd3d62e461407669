"""ASGI admission-webhook middleware (uvicorn, Starlette, FastAPI, any ASGI 3 server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Iterable, MutableMapping
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
from k8s_otel.webhook._tls import asgi_client_subject

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DISCONNECTED_EARLY = "the client disconnected before the request body was complete: not inspected"


def _latin1(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _joined(old: Optional[str], value: Any) -> str:
    text = _latin1(value)
    return text if old is None else f"{old},{text}"  # repeated lines fold with "," (RFC 9110)


def _trace_headers(headers: Iterable[tuple[Any, Any]]) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """traceparent, tracestate and baggage, folded. ASGI names are lower-case bytes: compared as
    they are, without decoding every name (only a name of the right length is lower-cased)."""
    traceparent = tracestate = baggage = None
    for name, value in headers:
        size = len(name)
        if size == 11:
            if name == b"traceparent" or name.lower() in (b"traceparent", "traceparent"):
                traceparent = _joined(traceparent, value)
        elif size == 10:
            if name == b"tracestate" or name.lower() in (b"tracestate", "tracestate"):
                tracestate = _joined(tracestate, value)
        elif size == 7 and (name == b"baggage" or name.lower() in (b"baggage", "baggage")):
            baggage = _joined(baggage, value)
    return traceparent, tracestate, baggage


def _caller(scope: Scope) -> Caller:
    client = scope.get("client")
    return Caller(
        request=scope,
        peer_address=str(client[0]) if client else None,
        client_subject=asgi_client_subject(scope),
    )


class ASGIMiddleware(WebhookMiddleware):
    """Wrap an ASGI admission webhook: ``app = ASGIMiddleware(app)`` (options: WebhookMiddleware).

    Non-HTTP scopes (lifespan, websocket) pass through.
    """

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        tracer = self.tracer
        try:
            method = scope.get("method", "")
            span, ctx = tracer.start(
                method,
                scope.get("path", ""),
                *_trace_headers(scope.get("headers") or ()),
                scope.get("k8s_otel.route"),
                (lambda: _caller(scope)) if tracer.policy.mode == "rule" else None,
            )
            token = otel_context.attach(ctx)
        except Exception:  # tracing must never stop a webhook
            await self.app(scope, receive, send)
            return
        try:
            if is_recording(span):
                await self._traced(scope, receive, send, method, span)
            else:
                await self.app(scope, receive, send)
        finally:
            detach(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, method: str, span: trace.Span
    ) -> None:
        tracer = self.tracer
        limit = tracer.max_body_bytes
        review = NOT_READ
        replay: deque[Message] = deque()
        disconnected = False
        try:
            host, user_agent, content_type = _http_headers(scope.get("headers") or ())
            http = _attributes(scope, method, host, user_agent)
            inspect, problem = tracer.inspection(method, scope.get("path", ""), content_type)
            if inspect:
                body, replay, disconnected = await _buffer_request(receive, limit)
                if disconnected:
                    span.set_attributes(http)
                    review = tracer.not_inspected(span, _DISCONNECTED_EARLY)
                else:
                    review = tracer.record_request(span, body, http)
            else:
                span.set_attributes(http)
                review = tracer.not_inspected(span, problem)
        except Exception as error:  # the app will meet the same receive() error itself
            problem = f"request body could not be read: {type(error).__name__}"
            with contextlib.suppress(Exception):  # a broken span: the request goes on regardless
                span.set_attribute(PROBLEMS, (problem,))
            review = ReviewRequest(problems=(problem,))

        status: Optional[int] = None
        chunks: Optional[list[bytes]] = [] if review.is_review else None  # a copy only to check
        size = 0
        complete = False

        async def replay_receive() -> Message:
            nonlocal disconnected
            message = replay.popleft() if replay else await receive()
            if not complete and message.get("type") == "http.disconnect":
                disconnected = True
            return message

        async def traced_send(message: Message) -> None:
            nonlocal status, chunks, size, complete, disconnected
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
            elif kind == "http.response.body":
                if chunks is not None:
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        chunks = None
                    else:
                        chunks.append(chunk)
                if not message.get("more_body", False):
                    complete = True
            try:
                await send(message)
            except OSError:  # ASGI 2.4: a send to a client that is gone raises OSError
                disconnected = not complete or disconnected
                raise

        try:
            await self.app(scope, replay_receive, traced_send)
        except BaseException as error:
            _name_after_route(span, scope, method)
            if disconnected and isinstance(error, (OSError, asyncio.CancelledError)):
                tracer.finish(span, review, status=status, body=None, disconnected=True)
            else:
                tracer.finish(span, review, status=status, body=None, error=error)
            raise
        _name_after_route(span, scope, method)
        body = b"".join(chunks) if chunks is not None else None
        tracer.finish(span, review, status=status, body=body, disconnected=disconnected and not complete)


def _name_after_route(span: trace.Span, scope: Scope, method: str) -> None:
    """Starlette and FastAPI leave the matched route in the scope: name the span after its template."""
    try:
        path = getattr(scope.get("route"), "path", None)
    except Exception:  # a route object we do not understand: keep the name we have
        return
    name_after_route(span, method, path)


async def _buffer_request(receive: Receive, limit: int) -> tuple[Optional[bytes], deque[Message], bool]:
    """Receive the whole request body (up to ``limit``), keeping every message for replay.

    Returns the body (None: larger than ``limit``), the messages, and whether the client
    disconnected before the body was complete.
    """
    messages: deque[Message] = deque()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            return None, messages, True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, messages, False  # the rest stays in the server's receive(), read by the app
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), messages, False


def _http_headers(headers: Iterable[tuple[Any, Any]]) -> tuple[Optional[str], Optional[str], Optional[str]]:
    host = user_agent = content_type = None
    for name, value in headers:
        size = len(name)
        if size == 4 and name.lower() in (b"host", "host"):
            host = _latin1(value)
        elif size == 10 and name.lower() in (b"user-agent", "user-agent"):
            user_agent = _latin1(value)
        elif size == 12 and name.lower() in (b"content-type", "content-type"):
            content_type = _latin1(value)
    return host, user_agent, content_type


def _attributes(scope: Scope, method: str, host: Optional[str], user_agent: Optional[str]) -> dict[str, Any]:
    server = scope.get("server")
    client = scope.get("client")
    query = scope.get("query_string") or b""
    return http_server_attributes(
        method=method,
        scheme=scope.get("scheme", "http"),
        path=scope.get("path", ""),
        query=_latin1(query[:2048]),
        host=host,
        server=(str(server[0]), server[1]) if server else None,
        client=(str(client[0]), client[1]) if client else None,
        user_agent=user_agent,
        protocol_version=scope.get("http_version"),
        route=scope.get("k8s_otel.route"),
    )
