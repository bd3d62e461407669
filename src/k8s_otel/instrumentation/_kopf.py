"""kopf: a span per handler invocation, and kopf's own API calls with kube-apiserver's span names.

Three kopf functions are wrapped (wrapt, all in this module):

- ``kopf._core.actions.execution.invoke_handler``: every handler call (create, update, delete,
  resume, field, event, timer, daemon, validate, mutate) goes through it, with the handler, the
  cause and the retry count. Activity (login, startup, probe) and indexing handlers are skipped.
- ``kopf._cogs.clients.api.request``: every call kopf makes to the API server (list, watch, patch,
  events) goes through it, on kopf's own aiohttp session; it gets the same CLIENT span as the
  ``kubernetes`` client instrumentation, and ``traceparent`` is injected. The aiohttp-client
  instrumentation is suppressed inside it: one span per call.
- ``kopf._core.reactor.processing.process_resource_event``: one reaction to one watch event. kopf
  applies the ``patch`` that handlers fill *after* they return, once per reaction; that PATCH is
  made a child of the handler that ran last in the reaction, so it sits in the handler's trace.
  Timers and daemons run in their own tasks, where the same is done per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from k8s_otel._exceptions import check_optional_bool, check_tracer_provider
from k8s_otel._extras import missing_extra
from k8s_otel.instrumentation._wrapt import wrap_function_wrapper

try:
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
    from opentelemetry.instrumentation.utils import unwrap
except ImportError as error:
    raise missing_extra("kopf", error) from None

from opentelemetry.trace import Link, Span, SpanKind

from k8s_otel import __version__
from k8s_otel._attributes import (
    API_GROUP,
    API_VERSION,
    ERROR_TYPE,
    KOPF_EVENT_TYPE,
    KOPF_HANDLER_ID,
    KOPF_HANDLER_TYPE,
    KOPF_OUTCOME,
    KOPF_RETRY,
    KOPF_RETRY_DELAY,
    LINK_ANNOTATION,
    RESOURCE,
    SERVER_ADDRESS,
    SERVER_PORT,
    SUBRESOURCE,
    URL_FULL,
)
from k8s_otel._errors import record_error, record_messages_from_env
from k8s_otel._exceptions import InvalidArgumentError
from k8s_otel._propagation import extract, inject, parse_traceparent
from k8s_otel._trust import TrustArgument, TrustPolicy
from k8s_otel.instrumentation._client import (
    async_call_wrapper,
    end_span,
    finish_client_span,
    start_client_span,
)
from k8s_otel.objects import TRACEPARENT_ANNOTATION, object_identity

__all__ = [
    "TRACEPARENT_ANNOTATION_ENV",
    "KopfInstrumentor",
    "check_annotation_name",
]

_logger = logging.getLogger("k8s_otel.instrumentation.kopf")
SCOPE = "k8s_otel.instrumentation.kopf"

TRACEPARENT_ANNOTATION_ENV = "K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION"

# Span attribute keys are in k8s_otel._attributes: the object's identity as every adapter gives it
# (objects.object_identity), the kopf-specific ones namespaced ``kopf.``.

# kopf's handler classes (1.37+ names, and the older ``Resource*`` ones) -> our handler type.
_HANDLER_TYPES = {
    "ChangingHandler": None,  # create/update/delete/resume/field: decided from the handler and cause
    "WatchingHandler": "event",
    "DaemonHandler": "daemon",
    "TimerHandler": "timer",
    "WebhookHandler": None,  # validate/mutate: decided from the handler's reason
}
# A reconcile is a new root of kind CONSUMER (KEP-5915); a sub-handler is a step inside its handler's
# span, and an admission handler a step inside kube-apiserver's request: INTERNAL.
_SPAN_KINDS = {"subhandler": SpanKind.INTERNAL, "validate": SpanKind.INTERNAL, "mutate": SpanKind.INTERNAL}
_DECORATOR = {"daemon": "kopf.daemon", "timer": "kopf.timer", "subhandler": "kopf.subhandler"}
_NOT_CHANGE_TRIGGERED = frozenset({"daemon", "timer"})
_MAX_DESCRIBED = 1024

_ANNOTATION_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_annotation_name(value: Any) -> str:
    """An annotation key as Kubernetes validates it: ``[prefix/]name``, prefix a DNS subdomain."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"traceparent_annotation must be a string, not {type(value).__name__}")
    key = value.strip()
    prefix, slash, name = key.rpartition("/")
    if not _ANNOTATION_NAME.fullmatch(name) or (
        slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))
    ):
        raise InvalidArgumentError(
            f"traceparent_annotation {value!r} is not a valid annotation key: a name of at most 63 "
            "characters ([A-Za-z0-9][-A-Za-z0-9_.]*), optionally prefixed by a DNS subdomain and '/'"
        )
    return key


@dataclass
class _Reaction:
    """The handler span that ran last in one reaction (one watch event) of one asyncio task."""

    task: Optional[asyncio.Task[Any]]
    span: Optional[Span] = None


_reaction: contextvars.ContextVar[Optional[_Reaction]] = contextvars.ContextVar(
    "k8s_otel_kopf_reaction", default=None
)


def _handler_type(handler: Any) -> Optional[str]:
    name = type(handler).__name__.removeprefix("Resource")
    if name not in _HANDLER_TYPES:
        return None  # activities, indexers, anything new: not a reconcile
    known = _HANDLER_TYPES[name]
    if known is not None:
        return known
    reason = getattr(handler, "reason", None)
    if name == "WebhookHandler":
        return "mutate" if str(getattr(reason, "value", reason)) == "mutating" else "validate"
    if getattr(handler, "selector", True) is None:
        return "subhandler"  # @kopf.subhandler / kopf.register inside a handler
    if reason is not None:
        return str(getattr(reason, "value", reason))
    if getattr(handler, "initial", None):
        return "resume"  # @kopf.on.resume: objects that exist when the operator starts
    if getattr(handler, "field", None):
        return "field"
    return "change"


@lru_cache(maxsize=512)
def _static(
    kind: str, group: str, version: str, plural: str, handler_id: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The span name and the keys that depend on the handler only (cached: a controller has few)."""
    decorator = _DECORATOR.get(kind, f"kopf.on.{kind}")
    label = f"{plural}.{group}" if group else plural
    keys = [
        (API_VERSION, version),
        (RESOURCE, plural),
        (KOPF_HANDLER_TYPE, kind),
        (KOPF_HANDLER_ID, handler_id),
    ]
    if group:
        keys.insert(0, (API_GROUP, group))
    return f"{decorator} {label}", tuple(keys)


def _event_type(kind: str, cause: Any) -> Optional[str]:
    if kind == "event":
        value = getattr(cause, "type", None)
        return str(value) if value else "LIST"  # kopf gives None for objects seen by listing
    if kind in ("validate", "mutate"):
        operation = getattr(cause, "operation", None)
        return str(operation) if operation else None
    reason = getattr(cause, "reason", None)
    value = getattr(reason, "value", reason)
    return str(value) if value and kind not in _NOT_CHANGE_TRIGGERED else None


def _metadata(cause: Any) -> Mapping[str, Any]:
    """The object's metadata, read from the raw dict under kopf's live ``Body`` view when there is
    one (each lookup through the view resolves its path again: the handler path's largest cost)."""
    body = getattr(cause, "body", None)
    if type(body) is not dict:
        raw = getattr(body, "_src", None)
        if type(raw) is dict and not getattr(body, "_path", True):
            body = raw
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    return metadata if isinstance(metadata, Mapping) else {}


def _identity(group: str, plural: str, metadata: Mapping[str, Any], cause: Any) -> dict[str, Any]:
    """The object's identity (``objects.object_identity``) and the subresource a cause names."""
    attributes = object_identity(metadata, group=group, plural=plural)
    subresource = getattr(cause, "subresource", None)
    if subresource:
        attributes[SUBRESOURCE] = str(subresource)
    return attributes


class _HandlerSpans:
    """Start and finish handler spans; every step is guarded so that kopf never sees our errors."""

    def __init__(
        self,
        tracer: trace.Tracer,
        annotation: Optional[str],
        policy: TrustPolicy,
        errors: dict[str, tuple[type[BaseException], ...]],
        record_messages: bool = False,
    ) -> None:
        self.tracer = tracer
        self.record_messages = record_messages
        # KEP-5915's annotation always; the configured one (an older convention) as well.
        self.annotations = (TRACEPARENT_ANNOTATION,) + (
            (annotation,) if annotation and annotation != TRACEPARENT_ANNOTATION else ()
        )
        self.policy = policy
        self.errors = errors
        self._described: dict[tuple[int, int], tuple[Any, Any, Any]] = {}

    def _describe(self, handler: Any, resource: Any) -> Optional[tuple[str, str, str, str, dict[str, Any]]]:
        """(kind, span name, group, plural, the handler's keys), cached by the handler and resource
        objects themselves (kopf reuses both): the handler path reads them once."""
        key = (id(handler), id(resource))
        cached = self._described.get(key)
        if cached is not None and cached[0] is handler and cached[1] is resource:
            return cached[2]  # type: ignore[no-any-return]
        kind = _handler_type(handler)
        described = None
        if kind is not None:
            group = str(getattr(resource, "group", "") or "")
            plural = str(getattr(resource, "plural", "") or "")
            version = str(getattr(resource, "version", "") or "")
            name, keys = _static(kind, group, version, plural, str(getattr(handler, "id", "") or ""))
            described = (kind, name, group, plural, dict(keys))
        if len(self._described) >= _MAX_DESCRIBED:
            self._described.clear()  # sub-handlers are new objects on every call: stay bounded
        self._described[key] = (handler, resource, described)
        return described

    def start(self, handler: Any, cause: Any, retry: Any) -> Optional[Span]:
        resource = getattr(cause, "resource", None)
        described = self._describe(handler, resource)
        if described is None:
            return None
        kind, name, group, plural, keys = described
        attributes: dict[str, Any] = keys.copy()
        if isinstance(retry, int):
            attributes[KOPF_RETRY] = retry
        event_type = _event_type(kind, cause)
        if event_type:
            attributes[KOPF_EVENT_TYPE] = event_type

        parent: Optional[Context] = None
        links: list[Link] = []
        if kind in ("validate", "mutate") and not trace.get_current_span().get_span_context().is_valid:
            # kopf's webhook server is not instrumented: the apiserver's context is in the headers.
            # A rule sees the kopf cause as the request: its headers, sslpeer and userinfo.
            parent, trusted_links = self.policy.resolve(
                extract(getattr(cause, "headers", None) or {}), request=cause
            )
            links.extend(trusted_links)
        metadata: Optional[Mapping[str, Any]] = None
        if kind not in _NOT_CHANGE_TRIGGERED:
            metadata = _metadata(cause)
            if metadata:
                self._annotation_links(metadata, links)
        span = self.tracer.start_span(
            name,
            parent,
            kind=_SPAN_KINDS.get(kind, SpanKind.CONSUMER),
            attributes=attributes,
            links=links or None,
        )
        if span.is_recording():  # unsampled: the object is not read
            span.set_attributes(_identity(group, plural, metadata or _metadata(cause), cause))
        return span

    def _annotation_links(self, metadata: Mapping[str, Any], links: list[Link]) -> None:
        """A link per stored context: ``tracing.k8s.io/traceparent``, then the extra annotation."""
        annotations = metadata.get("annotations")
        if not isinstance(annotations, Mapping):
            return
        seen = None
        for key in self.annotations:
            value = annotations.get(key)
            if value is None:
                continue
            span_context = parse_traceparent(value) if isinstance(value, str) else None
            if span_context is None:
                _logger.debug("k8s_otel: ignoring a malformed %s annotation", key)
            elif span_context != seen:
                links.append(Link(span_context, {LINK_ANNOTATION: key}))
                seen = span_context

    def finish(
        self,
        span: Span,
        error: Optional[BaseException],
        handler: Any = None,
        retry: Any = None,
        runtime: Any = None,
    ) -> None:
        try:
            if error is None:
                span.set_attribute(KOPF_OUTCOME, "success")
            elif isinstance(error, asyncio.CancelledError):
                span.set_attribute(KOPF_OUTCOME, "cancelled")  # a daemon stopped, the operator exiting
            elif isinstance(error, self.errors["children"]):
                span.set_attribute(KOPF_OUTCOME, "retry")  # sub-handlers still running: not a failure
            elif isinstance(error, self.errors["temporary"]):
                delay = getattr(error, "delay", None)
                if isinstance(delay, (int, float)):
                    span.set_attribute(KOPF_RETRY_DELAY, float(delay))
                if _kopf_gives_up(handler, retry, runtime, delay):
                    self._failed(
                        span, error, "permanent-error", "; kopf gives up: retries or timeout reached"
                    )
                else:
                    # kopf's requeue: the handler asks to be called again later. Not an error of
                    # the controller, but the reason is recorded.
                    span.set_attribute(KOPF_OUTCOME, "retry")
                    span.set_attribute(ERROR_TYPE, type(error).__qualname__)
                    self._record(span, error, set_status=False)
            elif isinstance(error, self.errors["admission"]):
                span.set_attribute(KOPF_OUTCOME, "denied")  # a validating answer, not a failure
                span.set_attribute(ERROR_TYPE, type(error).__qualname__)
                self._record(span, error, set_status=False)
            else:
                permanent = isinstance(error, self.errors["permanent"])
                self._failed(span, error, "permanent-error" if permanent else "error")
        except Exception:
            _logger.debug("k8s_otel: failed to finish a kopf handler span", exc_info=True)
        finally:
            end_span(span)

    def _failed(self, span: Span, error: BaseException, outcome: str, note: str = "") -> None:
        span.set_attribute(KOPF_OUTCOME, outcome)
        span.set_attribute(ERROR_TYPE, type(error).__qualname__)
        self._record(span, error, description_suffix=note)

    def _record(self, span: Span, error: BaseException, **options: Any) -> None:
        """The exception event (type, frames; an API error's status): its text only when opted in."""
        record_error(span, error, record_message=self.record_messages, **options)


def _kopf_gives_up(handler: Any, retry: Any, runtime: Any, delay: Any) -> bool:
    """kopf's own look-ahead: a TemporaryError is final when the next try would pass a limit."""
    retries = getattr(handler, "retries", None)
    if isinstance(retries, int) and isinstance(retry, int) and retry + 1 >= retries:
        return True
    timeout = getattr(handler, "timeout", None)
    seconds = getattr(runtime, "total_seconds", None)
    if isinstance(timeout, (int, float)) and callable(seconds):
        return bool(seconds() + (delay if isinstance(delay, (int, float)) else 0) >= timeout)
    return False


def _invoke_handler_wrapper(spans: _HandlerSpans) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            span = spans.start(kwargs.get("handler"), kwargs.get("cause"), kwargs.get("retry"))
        except Exception:
            _logger.debug("k8s_otel: failed to start a kopf handler span", exc_info=True)
            span = None
        if span is None:
            return await wrapped(*args, **kwargs)
        task = asyncio.current_task()
        reaction = _reaction.get()
        if reaction is not None and reaction.task is task:
            reaction.span = span
        else:
            # Timers and daemons run in their own task, outside process_resource_event; kopf applies
            # their patch in that task after each call. The variable lives as long as the task.
            _reaction.set(_Reaction(task, span))
        token = otel_context.attach(trace.set_span_in_context(span))  # use_span's work, without its generator
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            otel_context.detach(token)
            spans.finish(span, error, kwargs.get("handler"), kwargs.get("retry"), kwargs.get("runtime"))
            raise
        otel_context.detach(token)
        spans.finish(span, None)
        return result

    return wrapper


async def _process_resource_event_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    token = _reaction.set(_Reaction(asyncio.current_task()))
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _reaction.reset(token)


def _parent_for_kopf_call() -> Optional[Context]:
    """Inside a handler: the handler. After handlers, in the same reaction: the last handler."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    reaction = _reaction.get()
    if reaction is None or reaction.span is None or reaction.task is not asyncio.current_task():
        return None
    return trace.set_span_in_context(reaction.span)


class _KopfCalls:
    """kopf's ``api.request(method, url, *, headers=..., ...)``: its CLIENT span, for the shared wrapper."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], Span]:
        method = str(kwargs["method"] if "method" in kwargs else args[0]).upper()
        url = str(kwargs["url"] if "url" in kwargs else args[1])
        headers = kwargs.get("headers")
        content_type = ""
        if isinstance(headers, Mapping):
            content_type = str(headers.get("Content-Type") or headers.get("content-type") or "")
        span = start_client_span(self.tracer, method, url, None, content_type, _parent_for_kopf_call())
        outgoing = dict(headers) if isinstance(headers, Mapping) else {}
        inject(outgoing, trace.set_span_in_context(span))
        return args, {**kwargs, "headers": outgoing}, span

    @staticmethod
    def finish(span: Span, response: Any = None, error: Optional[BaseException] = None) -> None:
        if response is not None:
            _set_server(span, response)
        finish_client_span(span, response, error)


def _set_server(span: Span, response: Any) -> None:
    """kopf passes paths; the server the call went to is known from the response."""
    try:
        url = getattr(response, "url", None)
        if url is None or not span.is_recording():
            return
        span.set_attribute(SERVER_ADDRESS, str(url.host or ""))
        if url.port is not None:
            span.set_attribute(SERVER_PORT, int(url.port))
        span.set_attribute(URL_FULL, str(url.with_user(None)))
    except Exception:
        _logger.debug("k8s_otel: no server address from a kopf response", exc_info=True)


_TARGETS = (
    ("kopf._core.actions.execution", "invoke_handler"),
    ("kopf._cogs.clients.api", "request"),
    ("kopf._core.reactor.processing", "process_resource_event"),
)


class KopfInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``KopfInstrumentor().instrument()`` before ``kopf.run()``/``kopf.operator()``.

    Handler spans are CONSUMER roots that *link* to the W3C ``traceparent`` in the object's
    ``tracing.k8s.io/traceparent`` annotation (KEP-5915). Options: ``tracer_provider``;
    ``traceparent_annotation`` (default: the ``K8S_OTEL_KOPF_TRACEPARENT_ANNOTATION`` env var;
    unset: none): one more annotation to link from (an invalid key raises ``ValueError``; an
    invalid env var is logged and ignored); ``trust`` (default ``"trust"``): the policy for the
    ``traceparent`` kube-apiserver sends to kopf's admission webhooks (a rule gets the kopf cause
    as ``Caller.request``); ``record_exception_messages`` (default: the
    ``K8S_OTEL_RECORD_EXCEPTION_MESSAGES`` env var, off): record a handler exception's message. Off,
    only its type and frames are recorded, because a handler's error often quotes the object; an API
    error is always recorded by its HTTP status only.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("kopf >= 1.37",)

    def instrument(
        self,
        *,
        tracer_provider: Optional[trace.TracerProvider] = None,
        trust: TrustArgument = "trust",
        record_exception_messages: Optional[bool] = None,
        traceparent_annotation: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        """Instrument kopf (``kwargs``: ``BaseInstrumentor``'s own). ``tracer_provider``, ``trust``
        and ``record_exception_messages`` mean what they mean on the webhook entry points."""
        super().instrument(
            tracer_provider=tracer_provider,
            trust=trust,
            record_exception_messages=record_exception_messages,
            traceparent_annotation=traceparent_annotation,
            **kwargs,
        )

    def _instrument(self, **kwargs: Any) -> None:
        import kopf
        from kopf._core.actions import execution

        check_tracer_provider(kwargs.get("tracer_provider"), "KopfInstrumentor().instrument()")
        check_optional_bool(
            kwargs.get("record_exception_messages"),
            "KopfInstrumentor().instrument()",
            "record_exception_messages",
        )
        tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=kwargs.get("tracer_provider"))
        annotation = kwargs.get("traceparent_annotation")
        if annotation is not None:
            annotation = check_annotation_name(annotation)  # a bad argument raises: a coding error
        else:
            annotation = os.environ.get(TRACEPARENT_ANNOTATION_ENV, "").strip() or None
            if annotation is not None:
                try:
                    annotation = check_annotation_name(annotation)
                except ValueError as error:  # a bad env var is reported, never raised
                    _logger.error(
                        "k8s_otel: %s=%r ignored: %s", TRACEPARENT_ANNOTATION_ENV, annotation, error
                    )
                    annotation = None
        errors = {
            "temporary": (kopf.TemporaryError,),
            "permanent": (kopf.PermanentError,),
            "admission": (kopf.AdmissionError,),
            "children": tuple(c for c in (getattr(execution, "HandlerChildrenRetry", None),) if c),
        }
        record_messages = kwargs.get("record_exception_messages")
        spans = _HandlerSpans(
            tracer,
            annotation or None,
            TrustPolicy.parse(kwargs.get("trust", "trust")),
            errors,
            record_messages_from_env() if record_messages is None else bool(record_messages),
        )
        wrappers: tuple[Callable[..., Any], ...] = (
            _invoke_handler_wrapper(spans),
            async_call_wrapper(_KopfCalls(tracer)),
            _process_resource_event_wrapper,
        )
        self._patched: list[tuple[Any, str]] = []
        for (module_name, attribute), wrapper in zip(_TARGETS, wrappers):
            try:
                module = __import__(module_name, fromlist=[attribute])
                getattr(module, attribute)
            except (ImportError, AttributeError):
                _logger.warning(
                    "k8s_otel: kopf %s has no %s.%s; that part is not traced",
                    getattr(kopf, "__version__", "?"),
                    module_name,
                    attribute,
                )
                continue
            wrap_function_wrapper(module_name, attribute, wrapper)
            self._patched.append((module, attribute))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_patched", []):
            unwrap(owner, name)
        self._patched = []
