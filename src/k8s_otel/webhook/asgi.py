"""ASGI admission-webhook middleware (uvicorn, Starlette, FastAPI, any ASGI 3 server)."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace

from k8s_otel.admission import ReviewRequest
from k8s_otel.propagation import pair_values
from k8s_otel.webhook._core import (
    HTTPRequest,
    WebhookMiddleware,
    detach,
    http_server_attributes,
)

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIMiddleware(WebhookMiddleware):
    """Wrap an ASGI admission webhook: ``app = ASGIMiddleware(app)`` (options: WebhookMiddleware).

    Non-HTTP scopes (lifespan, websocket) pass through.
    """

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        try:
            traceparent, tracestate, baggage = pair_values(scope.get("headers") or ())
            request = HTTPRequest(
                method=scope.get("method", ""),
                path=scope.get("path", ""),
                query=(scope.get("query_string") or b"").decode("latin-1"),
                traceparent=traceparent,
                tracestate=tracestate,
                baggage=baggage,
            )
            span, ctx = self.tracer.start(request, scope.get("k8s_otel.route"))
        except Exception:  # tracing must never stop a webhook
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(ctx)
        try:
            if span.is_recording():
                await self._traced(scope, receive, send, request, span)
            else:
                await self.app(scope, receive, send)
        finally:
            detach(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, request: HTTPRequest, span: trace.Span
    ) -> None:
        limit = self.tracer.max_body_bytes
        review = ReviewRequest()
        replay: deque[Message] = deque()
        try:
            span.set_attributes(_attributes(scope, request))
            if request.method == "POST":  # kube-apiserver only POSTs; probes and the like are left alone
                body, replay = await _buffer_request(receive, limit)
                review = self.tracer.record_request(span, body)
        except Exception as error:  # the app will meet the same receive() error itself
            span.set_attribute(
                "admission.problems", (f"request body could not be read: {type(error).__name__}",)
            )

        async def replay_receive() -> Message:
            return replay.popleft() if replay else await receive()

        status: Optional[int] = None
        chunks: Optional[list[bytes]] = []
        size = 0

        async def traced_send(message: Message) -> None:
            nonlocal status, chunks, size
            kind = message.get("type")
            if kind == "http.response.start":
                status = message.get("status")
            elif kind == "http.response.body" and chunks is not None:
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    chunks = None
                else:
                    chunks.append(chunk)
            await send(message)

        try:
            await self.app(scope, replay_receive, traced_send)
        except BaseException as error:
            _name_after_route(span, scope, request.method)
            self.tracer.finish(span, review, status=status, body=None, error=error)
            raise
        _name_after_route(span, scope, request.method)
        self.tracer.finish(span, review, status=status, body=b"".join(chunks) if chunks is not None else None)


def _name_after_route(span: trace.Span, scope: Scope, method: str) -> None:
    """Starlette and FastAPI leave the matched route in the scope: name the span after its template."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        span.update_name(f"{method} {path}")
        span.set_attribute("http.route", path)


async def _buffer_request(receive: Receive, limit: int) -> tuple[Optional[bytes], deque[Message]]:
    """Receive the whole request body (up to ``limit``), keeping every message for replay."""
    messages: deque[Message] = deque()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            return None, messages  # disconnected before the body was complete
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, messages  # the rest stays in the server's receive(), read by the app
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _attributes(scope: Scope, request: HTTPRequest) -> dict[str, Any]:
    host = user_agent = None
    for name, value in scope.get("headers") or ():
        lowered = name.lower()
        if lowered == b"host":
            host = value.decode("latin-1")
        elif lowered == b"user-agent":
            user_agent = value.decode("latin-1")
    server = scope.get("server")
    client = scope.get("client")
    return http_server_attributes(
        method=request.method,
        scheme=scope.get("scheme", "http"),
        path=request.path,
        query=request.query,
        host=host,
        server=(str(server[0]), server[1]) if server else None,
        client=(str(client[0]), client[1]) if client else None,
        user_agent=user_agent,
        protocol_version=scope.get("http_version"),
        route=scope.get("k8s_otel.route"),
    )
