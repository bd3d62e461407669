"""A decorator for a plain ``handler(review: dict) -> dict``, for people who run their own server.

It takes the same options as the middlewares (``WebhookOptions``) and names its span by the same
rule (``span_name``): ``POST <path>`` when the caller passes ``path=``, else ``POST``.
"""

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
from k8s_otel._trust import Caller, TrustArgument
from k8s_otel.webhook._core import (
    DEFAULT_MAX_BODY_BYTES,
    PathFilter,
    WebhookOptions,
    WebhookTracer,
    detach,
    is_recording,
    span_name,
)

__all__ = ["admission_handler"]

_logger = logging.getLogger("k8s_otel.webhook")

Review = Mapping[str, Any]


class _Started:
    __slots__ = ("request", "span", "token")

    def __init__(self, span: Span, token: object, request: ReviewRequest) -> None:
        self.span, self.token, self.request = span, token, request


def _content_length(headers: Any) -> Optional[int]:
    """The request's Content-Length from the caller's headers (a mapping, any case), if it says."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name in ("Content-Length", "content-length", "CONTENT_LENGTH"):
        value = get(name)
        if value is not None:
            text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
            text = text.strip()
            return int(text) if text.isdigit() and len(text) <= 19 else None
    return None


def _body(tracer: WebhookTracer, review: Any, headers: Any) -> Union[bytes, Mapping[str, Any], None]:
    """What to read the review from; None when it is larger than ``max_body_bytes``, as the
    middlewares would see it: the raw body's length, or the Content-Length the headers give."""
    limit = tracer.max_body_bytes
    if isinstance(review, (bytes, bytearray)):
        return None if len(review) > limit else bytes(review)
    if headers is not None:
        length = _content_length(headers)
        if length is not None and length > limit:
            return None
    return review if isinstance(review, Mapping) else b""


def _begin(
    tracer: WebhookTracer,
    review: Any,
    headers: Any,
    path: Optional[str],
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
        name = span_name("POST", path if isinstance(path, str) else None)
        span = tracer.tracer.start_span(name, context=parent, kind=kind, links=links)
        request = ReviewRequest()
        if is_recording(span):
            if isinstance(path, str) and not tracer.accepts_path(path):
                request = tracer.not_inspected(span, None)
            else:
                request = tracer.record_request(span, _body(tracer, review, headers))
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
    answered = error is None and isinstance(response, (Mapping, bytes, bytearray))
    body = (bytes(response) if isinstance(response, bytearray) else response) if answered else None
    tracer.finish(started.span, started.request, status=None, body=body, error=error)


def admission_handler(
    func: Optional[Callable[..., Any]] = None,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
    webhook_type: Optional[str] = None,
    record_user: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    record_exception_messages: Optional[bool] = None,
    paths: PathFilter = None,
    fast_reader: bool = True,
) -> Any:
    """Trace ``handler(review) -> response review``, as ``@admission_handler`` or with options.

    The options are the middlewares' (``WebhookOptions``), checked when the handler is decorated.
    Call the wrapped handler as ``handler(review, headers=request_headers, path=request_path)`` to
    continue kube-apiserver's trace (the span is then a SERVER span in the incoming context, per
    ``trust``); without ``headers`` it is an INTERNAL span in the current context. The span is
    named ``POST <path>`` as the middlewares name it (``POST`` without ``path``). ``review`` may
    be the parsed mapping or the raw body; a body over ``max_body_bytes`` (its length, or the
    headers' Content-Length) is passed to the handler unread, and the span says so. Pass
    ``request=``, ``peer_address=`` and ``client_subject=`` (the verified client certificate's
    subject) too, and a trust rule sees them in its ``Caller``. The handler's own signature and
    return value are unchanged; its exceptions are recorded (type and frames; messages only with
    ``record_exception_messages``) and re-raised. ``async def`` handlers are supported: the span
    ends when the coroutine completes.
    """
    options = WebhookOptions(
        tracer_provider=tracer_provider,
        trust=trust,
        webhook_type=webhook_type,
        record_user=record_user,
        max_body_bytes=max_body_bytes,
        record_exception_messages=record_exception_messages,
        paths=paths,
        fast_reader=fast_reader,
    )

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        tracer = WebhookTracer(options)

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
                path: Optional[str] = None,
                request: Any = None,
                peer_address: Optional[str] = None,
                client_subject: Optional[str] = None,
            ) -> Any:
                started = _begin(
                    tracer, review, headers, path, caller_of(headers, request, peer_address, client_subject)
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
            path: Optional[str] = None,
            request: Any = None,
            peer_address: Optional[str] = None,
            client_subject: Optional[str] = None,
        ) -> Any:
            started = _begin(
                tracer, review, headers, path, caller_of(headers, request, peer_address, client_subject)
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
