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
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from opentelemetry import trace

from k8s_otel._env import env_flag
from k8s_otel._exceptions import check_optional_bool, check_tracer_provider
from k8s_otel._extras import missing_extra
from k8s_otel.instrumentation._wrapt import wrap_function_wrapper

try:
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
    from opentelemetry.instrumentation.utils import unwrap
except ImportError as error:
    raise missing_extra("kubernetes", error) from None

from opentelemetry.trace import Span

from k8s_otel import __version__
from k8s_otel._propagation import inject
from k8s_otel.instrumentation._client import (
    async_call_wrapper,
    finish_client_span,
    start_client_span,
    sync_call_wrapper,
)
from k8s_otel.instrumentation._stamp import INJECT_OBJECT_CONTEXT_ENV, stamped_body

__all__ = ["INJECT_OBJECT_CONTEXT_ENV", "KubernetesClientInstrumentor"]

_logger = logging.getLogger("k8s_otel.instrumentation.kubernetes")
SCOPE = "k8s_otel.instrumentation.kubernetes"
_TARGETS = (
    ("kubernetes.client.rest", "RESTClientObject.request"),
    ("kubernetes_asyncio.client.rest", "RESTClientObject.request"),
)


class _ClientSpans:
    """Start and finish the CLIENT span of a call; never raises into the caller."""

    def __init__(self, tracer: trace.Tracer, function: Callable[..., Any], stamp: bool = False) -> None:
        self.tracer = tracer
        names = list(inspect.signature(function).parameters)[1:]  # without self
        self.headers_index = names.index("headers") if "headers" in names else None
        self.query_index = names.index("query_params") if "query_params" in names else None
        self.body_index = names.index("body") if "body" in names else None
        self.stamp = stamp and "body" in names
        self.dict_json_patch_is_strategic = stamp and _rewrites_dict_json_patches(function)

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
        if self.stamp and method in ("POST", "PUT", "PATCH"):
            args, kwargs = self._stamped(args, kwargs, method, url, content_type, headers)
        return args, kwargs, span

    def _stamped(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        method: str,
        url: str,
        content_type: str,
        headers: dict[str, Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments with the body stamped (KEP-5915 writer rules), or unchanged when in doubt."""
        traceparent = headers.get("traceparent")
        body = self._argument(args, kwargs, "body", self.body_index)
        if not isinstance(traceparent, str) or body is None:
            return args, kwargs
        try:
            stamped = stamped_body(
                method,
                urlsplit(url).path,
                content_type,
                body,
                traceparent,
                dict_json_patch_is_strategic=self.dict_json_patch_is_strategic,
            )
        except Exception:
            _logger.debug("k8s_otel: not stamping a request body", exc_info=True)
            return args, kwargs
        if stamped is None:
            return args, kwargs
        if "body" in kwargs or self.body_index is None or self.body_index >= len(args):
            return args, {**kwargs, "body": stamped}
        return (*args[: self.body_index], stamped, *args[self.body_index + 1 :]), kwargs

    finish = staticmethod(finish_client_span)


def _rewrites_dict_json_patches(function: Callable[..., Any]) -> bool:
    """Whether the client's ``request`` sends a mapping given as a JSON patch as a strategic merge
    patch (``kubernetes`` 37 does, in the very function wrapped here). Unknown means no."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return "application/json-patch+json" in source and "application/strategic-merge-patch+json" in source


def _inject_object_context_from_env() -> bool:
    return env_flag(INJECT_OBJECT_CONTEXT_ENV, "objects are not stamped")


class KubernetesClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``KubernetesClientInstrumentor().instrument(tracer_provider=...)``; ``opentelemetry-instrument`` finds it.

    Instruments whichever of ``kubernetes`` and ``kubernetes_asyncio`` is installed.
    ``inject_object_context=True`` (default: ``K8S_OTEL_KUBERNETES_INJECT_OBJECT_CONTEXT=true``, else
    off, as in KEP-5915) stamps the call's context into ``tracing.k8s.io/traceparent`` of the objects
    it creates and updates (never status, subresources, deletes, leases or events).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # either client will do; each is patched only when it imports

    def instrument(
        self,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        inject_object_context: Optional[bool] = None,
        **kwargs: Any,
    ) -> None:
        """Instrument the clients (``kwargs``: ``BaseInstrumentor``'s own)."""
        super().instrument(
            tracer_provider=tracer_provider, inject_object_context=inject_object_context, **kwargs
        )

    def _instrument(self, **kwargs: Any) -> None:
        check_tracer_provider(kwargs.get("tracer_provider"), "KubernetesClientInstrumentor().instrument()")
        check_optional_bool(
            kwargs.get("inject_object_context"),
            "KubernetesClientInstrumentor().instrument()",
            "inject_object_context",
        )
        tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=kwargs.get("tracer_provider"))
        stamp = kwargs.get("inject_object_context")
        stamp = _inject_object_context_from_env() if stamp is None else bool(stamp)
        self._patched: list[tuple[Any, str]] = []
        for module_name, attribute in _TARGETS:
            try:
                module = __import__(module_name, fromlist=["RESTClientObject"])
            except ImportError:
                continue
            function = module.RESTClientObject.request
            spans = _ClientSpans(tracer, function, stamp)
            wrapper = (
                async_call_wrapper(spans)
                if inspect.iscoroutinefunction(function)
                else sync_call_wrapper(spans)
            )
            wrap_function_wrapper(module_name, attribute, wrapper)
            self._patched.append((module.RESTClientObject, "request"))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_patched", []):
            unwrap(owner, name)
        self._patched = []
