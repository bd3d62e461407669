"""CLIENT spans for calls to kube-apiserver, shared by the ``kubernetes`` client and kopf wrappers.

A call is one span named exactly as kube-apiserver names its server span for the same request,
with kube-apiserver's request keys and the OpenTelemetry ones (``k8s.namespace.name``, ``http.*``:
see ``k8s_otel._attributes``). While it is open, generic HTTP instrumentation (urllib3, aiohttp-client)
is suppressed: one span per call, ours. What is recorded of an error is its type and status, never
its text (the response body).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, Callable, Optional, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from k8s_otel._attributes import (
    API_GROUP,
    API_VERSION,
    ERROR_TYPE,
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    K8S_NAMESPACE_NAME,
    NAME,
    RESOURCE,
    SERVER_ADDRESS,
    SERVER_PORT,
    SUBRESOURCE,
    URL_FULL,
    VERB,
)
from k8s_otel._conventions import (
    RequestInfoError,
    normalized_verb,
    parse_request_info,
    span_name_from_request_info,
)
from k8s_otel._errors import record_error

__all__ = [
    "CallSpans",
    "async_call_wrapper",
    "end_span",
    "finish_client_span",
    "start_client_span",
    "sync_call_wrapper",
]

_logger = logging.getLogger("k8s_otel.instrumentation.client")


class CallSpans(Protocol):
    """How a wrapper starts a call's span (maybe changing the arguments, e.g. headers) and ends it."""

    def start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], Span]: ...

    def finish(self, span: Span, response: Any = None, error: Optional[BaseException] = None) -> None: ...


@lru_cache(maxsize=1024)
def _describe(
    method: str, path: str, query: str, content_type: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The span name and the components' keys for a request (cached: controllers repeat requests)."""
    try:
        info = parse_request_info(method, path, query)
    except RequestInfoError:
        info = None
    attributes = [(VERB, normalized_verb(method, info, query, content_type))]
    if info is not None and info.is_resource_request:
        for key, value in (
            (API_GROUP, info.api_group),
            (API_VERSION, info.api_version),
            (RESOURCE, info.resource),
            (SUBRESOURCE, info.subresource),
            (K8S_NAMESPACE_NAME, info.namespace),
            (NAME, info.name),
        ):
            if value:
                attributes.append((key, value))
    return span_name_from_request_info(method, info), tuple(attributes)


def start_client_span(
    tracer: trace.Tracer,
    method: str,
    url: str,
    query_params: Any = None,
    content_type: str = "",
    context: Optional[Context] = None,
) -> Span:
    """A CLIENT span for one API call, named and keyed as kube-apiserver names the request.

    ``url`` may be relative (kopf passes paths); the server keys are then left to the caller.
    """
    parts = urlsplit(url)
    query = parts.query
    if query_params:
        query = "&".join(q for q in (query, urlencode(list(query_params))) if q)
    name, described = _describe(method, parts.path, query, content_type)
    attributes: dict[str, Any] = {**dict(described), HTTP_REQUEST_METHOD: method}
    if parts.hostname:
        attributes[SERVER_ADDRESS] = parts.hostname
        attributes[URL_FULL] = urlunsplit(
            (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, "")
        )
        if parts.port is not None:
            attributes[SERVER_PORT] = parts.port
    return tracer.start_span(name, context, kind=SpanKind.CLIENT, attributes=attributes)


def end_span(span: Span) -> None:
    """``span.end()``, which runs every span processor's ``on_end``: a broken one must not reach the caller."""
    try:
        span.end()
    except Exception:
        _logger.debug("k8s_otel: a span processor failed in on_end", exc_info=True)


def finish_client_span(span: Span, response: Any = None, error: Optional[BaseException] = None) -> None:
    """Record the status (or the error, with its status when it has one) and end the span.

    An error is recorded by ``record_error``: its type, HTTP status and frames, never its text (the
    text of an ``ApiException`` or a kopf ``APIError`` carries the response headers and body).
    """
    try:
        status = getattr(response, "status", None)
        if error is not None:
            status = getattr(error, "status", None) or status
            http_status = status if isinstance(status, int) and not isinstance(status, bool) else None
            record_error(span, error, status=http_status)
            span.set_attribute(ERROR_TYPE, str(http_status) if http_status else type(error).__qualname__)
        if isinstance(status, int) and status:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
            if status >= 400 and error is None:
                span.set_attribute(ERROR_TYPE, str(status))
                span.set_status(Status(StatusCode.ERROR))
    except Exception:  # never let tracing break a controller
        _logger.debug("k8s_otel: failed to finish a client span", exc_info=True)
    finally:
        end_span(span)


def sync_call_wrapper(spans: CallSpans) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            args, kwargs, span = spans.start(args, kwargs)
        except Exception:
            _logger.debug("k8s_otel: failed to start a client span", exc_info=True)
            return wrapped(*args, **kwargs)
        # The span made current (use_span's work, without its generator); finish records errors.
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            with suppress_http_instrumentation():
                response = wrapped(*args, **kwargs)
        except BaseException as error:
            spans.finish(span, error=error)
            raise
        finally:
            otel_context.detach(token)
        spans.finish(span, response)
        return response

    return wrapper


def async_call_wrapper(spans: CallSpans) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            args, kwargs, span = spans.start(args, kwargs)
        except Exception:
            _logger.debug("k8s_otel: failed to start a client span", exc_info=True)
            return await wrapped(*args, **kwargs)
        # The span made current (use_span's work, without its generator); finish records errors.
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            with suppress_http_instrumentation():
                response = await wrapped(*args, **kwargs)
        except BaseException as error:
            spans.finish(span, error=error)
            raise
        finally:
            otel_context.detach(token)
        spans.finish(span, response)
        return response

    return wrapper
