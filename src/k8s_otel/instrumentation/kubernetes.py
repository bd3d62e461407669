"""The ``kubernetes`` (and ``kubernetes_asyncio``) client, with kube-apiserver's span names.

Every API call goes through the generated client's ``RESTClientObject.request``; that one method is
wrapped. A call is one CLIENT span named exactly as kube-apiserver names its server span for the
same request (``GET /api/v1/namespaces/{:namespace}/pods/{:name}``), with the components' keys,
and ``traceparent``/``tracestate``/``baggage`` are injected so a trusting apiserver continues the
trace. While our span is open the urllib3 instrumentation is suppressed: one span per call, ours.
A watch is one span for the request that opens it, ending when the response headers arrive;
events are not spans.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection
from functools import lru_cache
from typing import Any, Callable, Optional
from urllib.parse import urlencode, urlsplit, urlunsplit

import wrapt
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from k8s_otel import __version__
from k8s_otel.conventions import (
    API_GROUP,
    API_VERSION,
    NAME,
    NAMESPACE,
    RESOURCE,
    SUBRESOURCE,
    VERB,
    RequestInfoError,
    normalized_verb,
    parse_request_info,
    span_name_from_request_info,
)
from k8s_otel.propagation import inject

__all__ = [
    "KubernetesClientInstrumentor",
    "end_span",
    "error_message",
    "finish_client_span",
    "start_client_span",
]

_logger = logging.getLogger(__name__)
SCOPE = "k8s_otel.instrumentation.kubernetes"
_TARGETS = (
    ("kubernetes.client.rest", "RESTClientObject.request"),
    ("kubernetes_asyncio.client.rest", "RESTClientObject.request"),
)


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
            (NAMESPACE, info.namespace),
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
    attributes: dict[str, Any] = {**dict(described), "http.request.method": method}
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        attributes["url.full"] = urlunsplit(
            (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, "")
        )
        if parts.port is not None:
            attributes["server.port"] = parts.port
    return tracer.start_span(name, context, kind=SpanKind.CLIENT, attributes=attributes)


def end_span(span: Span) -> None:
    """``span.end()``, which runs every span processor's ``on_end``: a broken one must not reach the caller."""
    try:
        span.end()
    except Exception:
        _logger.debug("k8s_otel: a span processor failed in on_end", exc_info=True)


def error_message(error: BaseException, status: Any = None) -> str:
    """What is recorded of an error: for an HTTP error, the status and reason phrase only.

    The text of an ``ApiException`` or a kopf ``APIError`` carries the response body (a Status,
    whose message and details may quote the object's fields) and headers; they stay out of spans.
    """
    if isinstance(status, int) and status:
        reason = getattr(error, "reason", None)
        return f"HTTP {status} {reason}" if isinstance(reason, str) and reason else f"HTTP {status}"
    return str(error)[:256]


def finish_client_span(span: Span, response: Any = None, error: Optional[BaseException] = None) -> None:
    """Record the status (or the error, with its status when it has one) and end the span."""
    try:
        status = getattr(response, "status", None)
        if error is not None:
            status = getattr(error, "status", None) or status
            message = error_message(error, status)
            span.record_exception(error, {"exception.message": message})
            span.set_attribute("error.type", str(status) if status else type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {message}"[:256]))
        if isinstance(status, int) and status:
            span.set_attribute("http.response.status_code", status)
            if status >= 400 and error is None:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
    except Exception:  # never let tracing break a controller
        _logger.debug("k8s_otel: failed to finish a client span", exc_info=True)
    finally:
        end_span(span)


class _ClientSpans:
    """Start and finish the CLIENT span of a call; never raises into the caller."""

    def __init__(self, tracer: trace.Tracer, function: Callable[..., Any]) -> None:
        self.tracer = tracer
        names = list(inspect.signature(function).parameters)[1:]  # without self
        self.headers_index = names.index("headers") if "headers" in names else None
        self.query_index = names.index("query_params") if "query_params" in names else None

    def _argument(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], name: str, index: Optional[int]
    ) -> Any:
        if name in kwargs:
            return kwargs[name]
        return args[index] if index is not None and index < len(args) else None

    def start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], Span]:
        method = str(self._argument(args, kwargs, "method", 0) or "").upper()
        url = str(self._argument(args, kwargs, "url", 1) or "")
        query_params = self._argument(args, kwargs, "query_params", self.query_index)
        headers = self._argument(args, kwargs, "headers", self.headers_index)
        content_type = ""
        if isinstance(headers, dict):
            content_type = str(headers.get("Content-Type") or headers.get("content-type") or "")
        span = start_client_span(self.tracer, method, url, query_params, content_type)
        if not isinstance(headers, dict):
            headers = {}
            if "headers" in kwargs or self.headers_index is None or self.headers_index >= len(args):
                kwargs = {**kwargs, "headers": headers}
            else:
                args = (*args[: self.headers_index], headers, *args[self.headers_index + 1 :])
        inject(headers, trace.set_span_in_context(span))
        return args, kwargs, span

    finish = staticmethod(finish_client_span)


def _sync_wrapper(spans: _ClientSpans) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            args, kwargs, span = spans.start(args, kwargs)
        except Exception:
            _logger.debug("k8s_otel: failed to start a client span", exc_info=True)
            return wrapped(*args, **kwargs)
        with trace.use_span(span, end_on_exit=False), suppress_http_instrumentation():
            try:
                response = wrapped(*args, **kwargs)
            except BaseException as error:
                spans.finish(span, error=error)
                raise
        spans.finish(span, response)
        return response

    return wrapper


def _async_wrapper(spans: _ClientSpans) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            args, kwargs, span = spans.start(args, kwargs)
        except Exception:
            _logger.debug("k8s_otel: failed to start a client span", exc_info=True)
            return await wrapped(*args, **kwargs)
        with trace.use_span(span, end_on_exit=False), suppress_http_instrumentation():
            try:
                response = await wrapped(*args, **kwargs)
            except BaseException as error:
                spans.finish(span, error=error)
                raise
        spans.finish(span, response)
        return response

    return wrapper


class KubernetesClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``KubernetesClientInstrumentor().instrument(tracer_provider=...)``; ``opentelemetry-instrument`` finds it.

    Instruments whichever of ``kubernetes`` and ``kubernetes_asyncio`` is installed.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # either client will do; each is patched only when it imports

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=kwargs.get("tracer_provider"))
        self._patched: list[tuple[Any, str]] = []
        for module_name, attribute in _TARGETS:
            try:
                module = __import__(module_name, fromlist=["RESTClientObject"])
            except ImportError:
                continue
            function = module.RESTClientObject.request
            spans = _ClientSpans(tracer, function)
            wrapper = _async_wrapper(spans) if inspect.iscoroutinefunction(function) else _sync_wrapper(spans)
            wrapt.wrap_function_wrapper(module_name, attribute, wrapper)
            self._patched.append((module.RESTClientObject, "request"))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_patched", []):
            unwrap(owner, name)
        self._patched = []
