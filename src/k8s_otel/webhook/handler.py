"""A decorator for a plain ``handler(review: dict) -> dict``, for people who run their own server."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from k8s_otel.propagation import extract
from k8s_otel.trust import TrustPolicy
from k8s_otel.webhook._core import WebhookTracer, detach

__all__ = ["admission_handler"]

Review = Mapping[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Any])


def admission_handler(
    func: Optional[Callable[[Review], Review]] = None,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: Union[TrustPolicy, str] = "trust",
    webhook_type: Optional[str] = None,
    record_user: bool = False,
) -> Any:
    """Trace ``handler(review) -> response review``, as ``@admission_handler`` or with options.

    Call the wrapped handler as ``handler(review, headers=request_headers)`` to continue
    kube-apiserver's trace (the span is then a SERVER span in the incoming context, per ``trust``);
    without ``headers`` it is an INTERNAL span in the current context. The handler's own
    signature and return value are unchanged; its exceptions are recorded and re-raised.
    """

    def decorate(handler: Callable[[Review], Review]) -> Callable[..., Review]:
        tracer = WebhookTracer(
            tracer_provider=tracer_provider, trust=trust, webhook_type=webhook_type, record_user=record_user
        )

        @functools.wraps(handler)
        def wrapper(review: Review, *, headers: Any = None) -> Review:
            if headers is not None:
                parent, links = tracer.policy.resolve(extract(headers))
                kind = SpanKind.SERVER
            else:
                parent, links, kind = otel_context.get_current(), [], SpanKind.INTERNAL
            span = tracer.tracer.start_span(handler.__name__, context=parent, kind=kind, links=links)
            if not span.is_recording():
                token = otel_context.attach(trace.set_span_in_context(span, parent))
                try:
                    return handler(review)
                finally:
                    detach(token)
            request = tracer.record_request(span, review if isinstance(review, Mapping) else b"")
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                response = handler(review)
            except BaseException as error:
                tracer.finish(span, request, status=None, body=None, error=error)
                raise
            finally:
                detach(token)
            tracer.finish(
                span, request, status=None, body=response if isinstance(response, Mapping) else None
            )
            return response

        return wrapper

    return decorate(func) if func is not None else decorate
