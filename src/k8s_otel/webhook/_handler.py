"""A decorator for a plain ``handler(review: dict) -> dict``, for people who run their own server."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from k8s_otel._admission import ReviewRequest
from k8s_otel._propagation import extract
from k8s_otel._trust import Caller, TrustPolicy
from k8s_otel.webhook._core import WebhookTracer, detach, is_recording

__all__ = ["admission_handler"]

_logger = logging.getLogger("k8s_otel.webhook")

Review = Mapping[str, Any]


class _Started:
    __slots__ = ("request", "span", "token")

    def __init__(self, span: Span, token: object, request: ReviewRequest) -> None:
        self.span, self.token, self.request = span, token, request


def _begin(
    tracer: WebhookTracer,
    name: str,
    review: Any,
    headers: Any,
    caller: Callable[[], Caller],
) -> Optional[_Started]:
    """Start the span and make it current. Never raises: None means "run the handler untraced"."""
    span: Optional[Span] = None
    try:
        if headers is not None:
            parent, links = tracer.policy.resolve(extract(headers), caller=caller)
            kind = SpanKind.SERVER
        else:
            parent, links, kind = otel_context.get_current(), (), SpanKind.INTERNAL
        span = tracer.tracer.start_span(name, context=parent, kind=kind, links=links)
        request = ReviewRequest()
        if is_recording(span):
            request = tracer.record_request(span, review if isinstance(review, Mapping) else b"")
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _Started(span, token, request)
    except Exception:  # tracing code around a handler never raises, and its span always ends
        _logger.debug("k8s_otel: failed to start the admission handler span", exc_info=True)
        if span is not None:
            with contextlib.suppress(Exception):
                span.end()
        return None


def _end(tracer: WebhookTracer, started: _Started, response: Any, error: Optional[BaseException]) -> None:
    detach(started.token)
    if not is_recording(started.span):
        with contextlib.suppress(Exception):
            started.span.end()
        return
    body = response if error is None and isinstance(response, Mapping) else None
    tracer.finish(started.span, started.request, status=None, body=body, error=error)


def admission_handler(
    func: Optional[Callable[..., Any]] = None,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: Union[TrustPolicy, str] = "trust",
    webhook_type: Optional[str] = None,
    record_user: bool = False,
    record_exception_messages: Optional[bool] = None,
) -> Any:
    """Trace ``handler(review) -> response review``, as ``@admission_handler`` or with options.

    Call the wrapped handler as ``handler(review, headers=request_headers)`` to continue
    kube-apiserver's trace (the span is then a SERVER span in the incoming context, per ``trust``);
    without ``headers`` it is an INTERNAL span in the current context. Pass ``request=``,
    ``peer_address=`` and ``client_subject=`` (the verified client certificate's subject) too, and
    a trust rule sees them in its ``Caller``. The handler's own signature and return value are
    unchanged; its exceptions are recorded (type and frames; messages only with
    ``record_exception_messages``) and re-raised. ``async def`` handlers are supported: the span
    ends when the coroutine completes.
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        tracer = WebhookTracer(
            tracer_provider=tracer_provider,
            trust=trust,
            webhook_type=webhook_type,
            record_user=record_user,
            record_exception_messages=record_exception_messages,
        )
        name = getattr(handler, "__name__", "admission handler")

        def caller_of(
            headers: Any, request: Any, peer_address: Any, client_subject: Any
        ) -> Callable[[], Caller]:
            return lambda: Caller(
                request=request if request is not None else headers,
                peer_address=peer_address,
                client_subject=client_subject,
            )

        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def async_wrapper(
                review: Review,
                *,
                headers: Any = None,
                request: Any = None,
                peer_address: Optional[str] = None,
                client_subject: Optional[str] = None,
            ) -> Any:
                started = _begin(
                    tracer, name, review, headers, caller_of(headers, request, peer_address, client_subject)
                )
                if started is None:
                    return await handler(review)
                try:
                    response = await handler(review)
                except BaseException as error:
                    _end(tracer, started, None, error)
                    raise
                _end(tracer, started, response, None)
                return response

            return async_wrapper

        @functools.wraps(handler)
        def wrapper(
            review: Review,
            *,
            headers: Any = None,
            request: Any = None,
            peer_address: Optional[str] = None,
            client_subject: Optional[str] = None,
        ) -> Any:
            started = _begin(
                tracer, name, review, headers, caller_of(headers, request, peer_address, client_subject)
            )
            if started is None:
                return handler(review)
            try:
                response = handler(review)
            except BaseException as error:
                _end(tracer, started, None, error)
                raise
            if inspect.isawaitable(response):
                # A sync function returning an awaitable (a partial of a coroutine, ...): the
                # span cannot wait for it here; say so rather than record a false outcome.
                _end(tracer, started, None, None)
                return response
            _end(tracer, started, response, None)
            return response

        return wrapper

    return decorate(func) if func is not None else decorate
